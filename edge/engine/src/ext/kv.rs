//! KV ops: `env.BINDING.get/put/delete/list` (JS glue in `01_kv.js`) call the node's [`KvStore`] for the namespace bound to that name.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::JsBuffer;
use deno_core::OpState;
use deno_core::ToJsBuffer;
use deno_core::op2;
use deno_error::JsErrorBox;

use crate::kv::KvBindings;
use crate::kv::KvError;
use crate::kv::KvPutOptions;
use crate::kv::KvStore;

/// The bindings of the function this isolate runs (absent: no KV bindings).
pub struct KvAccess(pub Option<KvBindings>);

/// The store and namespace behind `binding`, or the error the handler sees.
fn resolve(
    state: &Rc<RefCell<OpState>>,
    binding: &str,
) -> Result<(Arc<dyn KvStore>, String), JsErrorBox> {
    let state = state.borrow();
    let access = state.borrow::<KvAccess>();
    access
        .0
        .as_ref()
        .and_then(|bindings| {
            let namespace = bindings.namespaces.get(binding)?;
            Some((bindings.store.clone(), namespace.clone()))
        })
        .ok_or_else(|| {
            JsErrorBox::type_error(format!(
                "KV binding {binding:?} is not bound to this function"
            ))
        })
}

fn js_error(error: KvError) -> JsErrorBox {
    match error {
        KvError::Invalid(message) => JsErrorBox::type_error(message),
        KvError::Unavailable(message) => JsErrorBox::generic(message),
    }
}

/// `[value, metadata JSON or null, expiration or null]`, or null when absent.
#[op2]
#[serde]
pub async fn op_outpost_kv_get(
    state: Rc<RefCell<OpState>>,
    #[string] binding: String,
    #[string] key: String,
    #[number] cache_ttl: u64,
) -> Result<Option<(ToJsBuffer, Option<String>, Option<u64>)>, JsErrorBox> {
    let (store, namespace) = resolve(&state, &binding)?;
    let ttl = (cache_ttl > 0).then_some(cache_ttl);
    let entry = store.get(&namespace, &key, ttl).await.map_err(js_error)?;
    Ok(entry.map(|entry| {
        (
            entry.value.to_vec().into(),
            entry.metadata,
            entry.expiration,
        )
    }))
}

/// `put` options as the handler gave them; the store checks them.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutArgs {
    expiration: Option<u64>,
    expiration_ttl: Option<u64>,
    metadata: Option<String>,
}

#[op2]
pub async fn op_outpost_kv_put(
    state: Rc<RefCell<OpState>>,
    #[string] binding: String,
    #[string] key: String,
    #[buffer] value: JsBuffer,
    #[serde] options: PutArgs,
) -> Result<(), JsErrorBox> {
    let (store, namespace) = resolve(&state, &binding)?;
    let options = KvPutOptions {
        expiration: options.expiration,
        expiration_ttl: options.expiration_ttl,
        metadata: options.metadata,
    };
    store
        .put(
            &namespace,
            &key,
            bytes::Bytes::from(value.to_vec()),
            options,
        )
        .await
        .map_err(js_error)
}

/// `list` options as the handler gave them; the store checks them.
#[derive(serde::Deserialize)]
pub struct ListArgs {
    prefix: String,
    limit: Option<u64>,
    cursor: Option<String>,
}

#[op2]
pub async fn op_outpost_kv_delete(
    state: Rc<RefCell<OpState>>,
    #[string] binding: String,
    #[string] key: String,
) -> Result<(), JsErrorBox> {
    let (store, namespace) = resolve(&state, &binding)?;
    store.delete(&namespace, &key).await.map_err(js_error)
}

/// The listing as JSON text (keys with expiration and metadata, list_complete, cursor).
#[op2]
#[string]
pub async fn op_outpost_kv_list(
    state: Rc<RefCell<OpState>>,
    #[string] binding: String,
    #[serde] options: ListArgs,
) -> Result<String, JsErrorBox> {
    let (store, namespace) = resolve(&state, &binding)?;
    let listing = store
        .list(
            &namespace,
            &options.prefix,
            options.limit,
            options.cursor.as_deref(),
        )
        .await
        .map_err(js_error)?;
    serde_json::to_string(&listing).map_err(|error| JsErrorBox::generic(error.to_string()))
}

/// Binding names for `boot()`, in order.
pub fn binding_names(bindings: Option<&KvBindings>) -> Vec<String> {
    bindings
        .map(|bindings| bindings.namespaces.keys().cloned().collect())
        .unwrap_or_default()
}
