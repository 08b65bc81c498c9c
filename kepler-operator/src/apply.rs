//! Server-side apply with one field manager, and no write when nothing changed.
//!
//! A server-side apply of an unchanged manifest is still a PATCH: the API server answers it,
//! audits it and runs admission. The operator therefore reads the object first and applies only
//! when some field of the manifest differs from what is stored ([`is_subset`]): a resync in a
//! steady state costs reads only. Fields the server or other managers add (defaults, status,
//! `managedFields`) are not in the manifest and are ignored.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use crate::children::{Child, Kind};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "kepler-operator";

/// Applies manifests and deletes objects of any [`Kind`].
#[derive(Clone)]
pub struct Applier {
    client: Client,
}

/// True when `err` is a 404 from the API server (a Status, or the plain-text
/// "404 page not found" of an API group that is not served).
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.is_not_found() || s.code == 404)
}

impl Applier {
    /// An applier on `client`.
    pub fn new(client: Client) -> Applier {
        Applier { client }
    }

    fn api(&self, kind: Kind, namespace: &str) -> Api<DynamicObject> {
        let (group, version) = kind
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", kind.api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, kube::Error> {
        self.api(kind, namespace).get_opt(name).await
    }

    /// Makes the stored object match `child`; returns whether a write was needed.
    pub async fn ensure(&self, child: &Child, namespace: &str) -> Result<bool, kube::Error> {
        let api = self.api(child.kind, namespace);
        if let Some(live) = api.get_opt(&child.name).await? {
            let live = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
            if is_subset(&child.manifest, &live) {
                return Ok(false);
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&child.name, &params, &Patch::Apply(&child.manifest))
            .await?;
        Ok(true)
    }

    /// Deletes an object (background propagation); returns whether it existed.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<bool, kube::Error> {
        let api = self.api(kind, namespace);
        match api.get_opt(name).await? {
            None => Ok(false),
            Some(o) if o.metadata.deletion_timestamp.is_some() => Ok(true),
            Some(_) => match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            },
        }
    }
}

/// True when every field of `want` is in `have` with the same value. Lists must have the same
/// length and match item by item; an empty map or list matches a missing field (the API server
/// drops empty optional fields).
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => is_subset(wv, hv),
            None => is_empty(wv),
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        (w, Value::Null) => is_empty(w),
        (w, h) => w == h,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_fields_but_not_changed_values() {
        let want = json!({"spec": {"a": 1, "list": [{"x": "y"}], "empty": []}});
        let have = json!({"spec": {"a": 1, "b": 2, "list": [{"x": "y", "default": true}]},
                          "status": {}});
        assert!(is_subset(&want, &have));
        assert!(!is_subset(&json!({"spec": {"a": 2}}), &have));
        assert!(!is_subset(
            &json!({"spec": {"list": [{"x": "y"}, {"x": "z"}]}}),
            &have
        ));
        assert!(!is_subset(&json!({"spec": {"c": 0}}), &have));
    }
}
