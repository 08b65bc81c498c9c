//! `kubelet` mode against an HTTPS server of the test's own that serves `/pods` as a kubelet
//! does (no real kubelet can run here), plus tower-test mocks for request shapes and error
//! paths of both modes (issue 8).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kepler_core::Timestamp;
use kepler_k8s::{
    CacheConfig, InformerConfig, InformerMode, Lookup, PodCache, PodInformer, RequestKind,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::eventually;

const NODE: &str = "node-a";
const TOKEN: &str = "sa-token-of-kepler";

fn cid(n: u32) -> String {
    format!("{n:064x}")
}

/// A CA and a serving certificate for 127.0.0.1 that it signed.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// What the fake kubelet answers, and what it saw.
#[derive(Default)]
struct State {
    status: u16,
    body: String,
    auth: Vec<String>,
    paths: Vec<String>,
}

struct FakeKubelet {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    async fn start(pki: &Pki, body: String) -> FakeKubelet {
        kepler_crypto::install_process_default();
        let config = rustls::ServerConfig::builder_with_provider(kepler_crypto::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            status: 200,
            body,
            ..State::default()
        }));
        let requests = Arc::new(AtomicU64::new(0));
        let (st, rq) = (Arc::clone(&state), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let (st, rq) = (Arc::clone(&st), Arc::clone(&rq));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (st, rq) = (Arc::clone(&st), Arc::clone(&rq));
                        async move {
                            rq.fetch_add(1, Ordering::SeqCst);
                            let mut s = st.lock().unwrap();
                            s.paths.push(req.uri().path().to_string());
                            s.auth.push(
                                req.headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string(),
                            );
                            let resp = hyper::Response::builder()
                                .status(s.status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(s.body.clone())))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        FakeKubelet {
            addr,
            state,
            requests,
            task,
        }
    }

    fn answer(&self, status: u16, body: &str) {
        let mut s = self.state.lock().unwrap();
        s.status = status;
        s.body = body.to_string();
    }
}

/// A `/pods` answer: `(name, uid, node, [(container, id)], annotations)`.
/// `(name, uid, node, [(container, id)], annotations)`.
type PodSpec<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<(&'a str, String)>,
    serde_json::Value,
);

fn pod_list(pods: &[PodSpec<'_>]) -> String {
    let items: Vec<_> = pods
        .iter()
        .map(|(name, uid, node, cs, ann)| {
            let statuses: Vec<_> = cs
                .iter()
                .map(|(n, id)| serde_json::json!({"name": n, "containerID": format!("cri-o://{id}"), "image": "x"}))
                .collect();
            serde_json::json!({
                "metadata": {"name": name, "namespace": "kube-system", "uid": uid, "annotations": ann},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": "Running", "containerStatuses": statuses}
            })
        })
        .collect();
    serde_json::json!({"kind": "PodList", "apiVersion": "v1", "items": items}).to_string()
}

struct Setup {
    _dir: tempfile::TempDir,
    config: InformerConfig,
}

fn setup(ca_pem: &str, kubelet: &FakeKubelet, interval: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, ca_pem).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    // The service account's view: the API server's CA and a projected token file.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    certificate-authority: {}\n\
             users:\n- name: u\n  user:\n    tokenFile: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            ca.display(),
            token.display()
        ),
    )
    .unwrap();
    let mut config = InformerConfig::new(NODE);
    config.mode = InformerMode::Kubelet;
    config.kubeconfig = Some(kubeconfig);
    config.kubelet_url = Some(format!("https://{}", kubelet.addr));
    config.poll_interval = interval;
    config.cache = CacheConfig::default();
    Setup { _dir: dir, config }
}

fn found(cache: &PodCache, id: &str) -> Option<(String, String)> {
    match cache.view().lookup(id, None, Timestamp(0)) {
        Lookup::Container(c) => Some((c.name.to_string(), c.pod.name.to_string())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_pods_are_polled_with_the_token_and_mapped_issue_8() {
    let pki = pki();
    let body = pod_list(&[
        (
            "coredns-1",
            "8c1d6f4e-0000-4000-8000-000000000001",
            NODE,
            vec![("coredns", cid(1))],
            serde_json::json!({}),
        ),
        // A static pod as the kubelet lists it: its UID is the config hash.
        (
            "etcd-node-a",
            "6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5",
            NODE,
            vec![("etcd", cid(2))],
            serde_json::json!({"kubernetes.io/config.hash": "6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5", "kubernetes.io/config.source": "file"}),
        ),
        (
            "stray",
            "8c1d6f4e-0000-4000-8000-000000000009",
            "node-b",
            vec![("x", cid(9))],
            serde_json::json!({}),
        ),
    ]);
    let kubelet = FakeKubelet::start(&pki, body).await;
    let s = setup(&pki.ca_pem, &kubelet, Duration::from_millis(200));
    let informer = PodInformer::start(&s.config).await.unwrap();
    let cache = informer.cache().clone();
    eventually(10, "the first poll", || cache.stats().synced).await;
    assert_eq!(
        found(&cache, &cid(1)),
        Some(("coredns".into(), "coredns-1".into()))
    );
    assert_eq!(
        found(&cache, &cid(2)),
        Some(("etcd".into(), "etcd-node-a".into()))
    );
    assert_eq!(
        found(&cache, &cid(9)),
        None,
        "pods of other nodes are dropped"
    );
    // The sandbox of the static pod resolves through the cgroup's pod UID.
    match cache.view().lookup(
        &cid(3),
        Some("6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5"),
        Timestamp(0),
    ) {
        Lookup::Pod(p) => assert_eq!(&*p.name, "etcd-node-a"),
        other => panic!("{other:?}"),
    }
    let s = kubelet.state.lock().unwrap();
    assert_eq!(s.paths[0], "/pods");
    assert_eq!(s.auth[0], format!("Bearer {TOKEN}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_poll_interval_whatever_the_misses_issue_8() {
    let pki = pki();
    let kubelet = FakeKubelet::start(&pki, pod_list(&[])).await;
    let interval = Duration::from_millis(250);
    let s = setup(&pki.ca_pem, &kubelet, interval);
    let started = Instant::now();
    let informer = PodInformer::start(&s.config).await.unwrap();
    let cache = informer.cache().clone();
    eventually(10, "the first poll", || cache.stats().synced).await;
    // A storm of lookups of ids in no pod, as a node full of system containers makes.
    let mut n = 0u32;
    while started.elapsed() < Duration::from_millis(1500) {
        let mut v = cache.view();
        for _ in 0..1000 {
            n += 1;
            assert_eq!(v.lookup(&cid(n % 5000), None, Timestamp(1)), Lookup::Miss);
        }
        drop(v);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let requests = kubelet.requests.load(Ordering::SeqCst);
    let allowed = (elapsed.as_millis() / interval.as_millis()) as u64 + 1;
    assert!(
        requests <= allowed && requests >= 2,
        "{requests} requests in {elapsed:?} at one per {interval:?}"
    );
    let st = cache.stats();
    assert_eq!(
        st.misses, 5000,
        "each unknown id is a miss once per negative TTL"
    );
    assert!(st.negative_hits > 0);
    // A poll may be in flight when the storm ends: the kubelet has counted it, the informer
    // has not recorded its answer yet. Every request the kubelet saw must be recorded as ok
    // once it is answered, so compare the two when no poll is in flight.
    let polls_ok = || {
        cache
            .stats()
            .requests
            .iter()
            .find(|(k, _)| *k == RequestKind::KubeletPods)
            .unwrap()
            .1
    };
    eventually(5, "every kubelet request recorded as ok", || {
        polls_ok().ok == kubelet.requests.load(Ordering::SeqCst)
    })
    .await;
    assert!(polls_ok().ok >= requests);
    assert!(polls_ok().seconds_total > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_polls_keep_the_last_pods_and_are_counted_issue_8() {
    let pki = pki();
    let ok = pod_list(&[("a", "u-a", NODE, vec![("c", cid(1))], serde_json::json!({}))]);
    let kubelet = FakeKubelet::start(&pki, ok).await;
    let s = setup(&pki.ca_pem, &kubelet, Duration::from_millis(100));
    let informer = PodInformer::start(&s.config).await.unwrap();
    let cache = informer.cache().clone();
    eventually(10, "the first poll", || found(&cache, &cid(1)).is_some()).await;

    kubelet.answer(500, r#"{"kind":"Status","status":"Failure","code":500}"#);
    eventually(10, "a failed poll", || cache.stats().poll_errors >= 2).await;
    assert!(
        found(&cache, &cid(1)).is_some(),
        "a failing kubelet must not blank names"
    );

    kubelet.answer(200, "this is not json");
    let errors = cache.stats().poll_errors;
    eventually(10, "a bad body", || cache.stats().poll_errors > errors).await;
    assert!(found(&cache, &cid(1)).is_some());

    kubelet.answer(
        200,
        &pod_list(&[("b", "u-b", NODE, vec![("c", cid(2))], serde_json::json!({}))]),
    );
    eventually(10, "recovery", || found(&cache, &cid(2)).is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_kubelet_certificate_is_refused_unless_insecure_issue_8() {
    let pki = pki();
    let other_ca = self::pki().ca_pem;
    let body = pod_list(&[("a", "u-a", NODE, vec![("c", cid(1))], serde_json::json!({}))]);
    let kubelet = FakeKubelet::start(&pki, body).await;
    let s = setup(&other_ca, &kubelet, Duration::from_millis(100));
    let informer = PodInformer::start(&s.config).await.unwrap();
    let cache = informer.cache().clone();
    eventually(10, "TLS failures", || cache.stats().poll_errors >= 2).await;
    assert!(!cache.stats().synced);
    assert_eq!(kubelet.requests.load(Ordering::SeqCst), 0);
    drop(informer);

    let mut insecure = s.config.clone();
    insecure.kubelet_insecure_tls = true;
    let informer = PodInformer::start(&insecure).await.unwrap();
    let cache = informer.cache().clone();
    eventually(10, "the insecure poll", || found(&cache, &cid(1)).is_some()).await;
}

mod mocked {
    //! tower-test mocks in place of the HTTP stack: the exact requests each mode sends.

    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn client() -> (kube::Client, Handle) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(svc, "default"), handle)
    }

    fn json(status: u16, body: String) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(body.into_bytes()))
            .unwrap()
    }

    #[tokio::test]
    async fn kubelet_mode_sends_get_pods_and_replaces_the_cache() {
        let (client, mut handle) = client();
        let cache = PodCache::new(CacheConfig::default());
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().path(), "/pods");
            assert_eq!(req.headers()["accept"], "application/json");
            send.send_response(json(
                200,
                pod_list(&[("a", "u-a", NODE, vec![("c", cid(1))], serde_json::json!({}))]),
            ));
        });
        let n = kepler_k8s::poll_once(&client, "/pods", NODE, &cache)
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(n, 1);
        assert!(found(&cache, &cid(1)).is_some());
    }

    #[tokio::test]
    async fn kubelet_forbidden_is_an_error_naming_the_path() {
        let (client, mut handle) = client();
        let cache = PodCache::new(CacheConfig::default());
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(json(
                403,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Forbidden (user=system:serviceaccount:kepler:kepler, verb=get, resource=nodes, subresource=proxy)","reason":"Forbidden","code":403}"#.into(),
            ));
        });
        let err = kepler_k8s::poll_once(&client, "/pods", NODE, &cache)
            .await
            .unwrap_err();
        server.await.unwrap();
        let msg = err.to_string();
        assert!(msg.contains("/pods") && msg.contains("403"), "{msg}");
        assert!(!cache.stats().synced);
    }

    #[tokio::test]
    async fn apiserver_mode_lists_and_watches_only_this_node() {
        let (client, mut handle) = client();
        let cfg = {
            let mut c = InformerConfig::new(NODE);
            c.mode = InformerMode::ApiServer;
            c
        };
        let informer =
            PodInformer::spawn_with_client(client, &cfg, PodCache::new(CacheConfig::default()));
        let cache = informer.cache().clone();
        let (list, send) = handle.next_request().await.unwrap();
        let q = list.uri().query().unwrap_or("").to_string();
        assert_eq!(list.uri().path(), "/api/v1/pods");
        assert!(q.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{q}");
        assert!(!q.contains("watch=true"), "{q}");
        send.send_response(json(
            200,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"41"},"items":[
              {"metadata":{"name":"a","namespace":"n","uid":"u-a","resourceVersion":"40"},
               "spec":{"nodeName":"node-a"},
               "status":{"containerStatuses":[{"name":"c","containerID":"containerd://aa"}]}}]}"#
                .into(),
        ));
        let (watch, send) = handle.next_request().await.unwrap();
        let q = watch.uri().query().unwrap_or("").to_string();
        assert!(q.contains("watch=true"), "{q}");
        assert!(q.contains("resourceVersion=41"), "{q}");
        assert!(q.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{q}");
        // The watch ends with a 410 Gone event: the watcher must relist.
        send.send_response(json(
            200,
            r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 41 (50)","reason":"Expired","code":410}}
"#
            .into(),
        ));
        let (relist, send) = handle.next_request().await.unwrap();
        assert!(!relist.uri().query().unwrap_or("").contains("watch=true"));
        send.send_response(json(
            200,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"60"},"items":[]}"#.into(),
        ));
        let (_watch2, _send) = handle.next_request().await.unwrap();
        eventually(5, "the relist to be applied", || {
            let st = cache.stats();
            st.relists == 1 && st.watch_errors == 1
        })
        .await;
        // "aa" was listed first, then absent from the relist: gone (kept for the retention).
        assert!(matches!(
            cache.view().lookup("aa", None, Timestamp(0)),
            Lookup::Container(_)
        ));
        drop(informer);
    }
}
