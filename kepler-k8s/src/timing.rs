//! A tower layer in the kube client stack that times every request to the kubelet or API
//! server (up to the response head: for a watch that is the time to open it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use crate::stats::{RequestKind, Stats};

/// Records the duration and outcome of each request in [`Stats`].
#[derive(Clone)]
pub(crate) struct TimingLayer {
    pub(crate) stats: Arc<Stats>,
    /// `None`: an API-server client (list or watch, told apart by the query); `Some`: fixed.
    pub(crate) kind: Option<RequestKind>,
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`TimingLayer`] makes.
#[derive(Clone)]
pub(crate) struct Timed<S> {
    inner: S,
    layer: TimingLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let kind = self.layer.kind.unwrap_or_else(|| {
            let watch = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true"));
            if watch {
                RequestKind::Watch
            } else {
                RequestKind::List
            }
        });
        let stats = Arc::clone(&self.layer.stats);
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let ok = matches!(&res, Ok(r) if r.status().is_success());
            stats.record(kind, started.elapsed(), ok);
            res
        })
    }
}
