//! Reading a whole resource from the API server, as fast as the API server hands it over and
//! in bounded memory, for `serve`'s caches and `audit -A` alike.
//!
//! Two ways to list ([`Mode`]):
//! - [`Mode::Snapshot`]: one list at `resourceVersion=0`, which the API server answers from
//!   its watch cache without asking etcd, as client-go's informers list. The body is decoded
//!   while it arrives, item by item, so neither side waits for the other and no more than
//!   one item is held at a time, whatever the list's size.
//! - [`Mode::Pages`]: pages (of [`PAGE`] objects unless told otherwise) following continue
//!   tokens, each decoded the same way. The first page asks for
//!   `resourceVersion=1&resourceVersionMatch=NotOlderThan` (any state at least that new, i.e.
//!   any), which an API server of 1.34 or later serves from its watch cache and, since the
//!   version is not `0`, cut to the limit (at `0` the limit is ignored: that would be the
//!   snapshot again); the continue tokens then carry that state's version, served from the
//!   cache's snapshot of it. Older API servers read those
//!   pages from etcd, as a consistent list would. That state may be old (a resource nobody
//!   wrote to for a while) and its snapshot gone, its version compacted in etcd (410 Gone):
//!   the list then starts over as a consistent one (no `resourceVersion`), at the newest
//!   state. Slower than a snapshot: every page is a round trip that neither side overlaps
//!   (a custom resource's list has its metadata, so its continue token, after the items),
//!   hence pages of thousands, not client-go's 500: the cost is the API server's per request,
//!   not the page's (the decoding streams). It is the fallback when the API server refuses a
//!   snapshot (for example, a list that runs past its `--request-timeout` is cut off).
//!
//! The items are handed over as JSON text ([`RawValue`]); what to build from them is the
//! caller's choice (the caches read footprints, `audit` whole objects).
use std::io::BufReader;

use kube::{
    Client, Resource as _,
    api::{ApiResource, DynamicObject, ListParams, VersionMatch},
    core::Request,
};
use serde::{
    Deserialize,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::value::RawValue;
use tokio_util::{compat::FuturesAsyncReadCompatExt as _, io::SyncIoBridge};
use tracing::{Span, dispatcher, info};

/// Objects per page in [`Mode::Pages`] unless told otherwise.
pub const PAGE: u32 = 5000;
/// The first page's `resourceVersion` in [`Mode::Pages`]: any state (every state is newer
/// than 1), but not `0`, at which the watch cache ignores `limit`.
const ANY_VERSION: &str = "1";

/// Whether `uri` asks for the first page of [`Mode::Pages`] (for tests of the callers).
#[cfg(test)]
pub(crate) fn first_page(uri: &str) -> bool {
    uri.contains(&format!("limit={PAGE}"))
        && uri.contains("resourceVersion=1&")
        && uri.contains("resourceVersionMatch=NotOlderThan")
        && !uri.contains("continue=")
}

/// Whether `uri` asks for the first page of [`Mode::Pages`] after a 410: a consistent one.
#[cfg(test)]
pub(crate) fn first_consistent_page(uri: &str) -> bool {
    uri.contains(&format!("limit={PAGE}"))
        && !uri.contains("resourceVersion")
        && !uri.contains("continue=")
}

/// Whether `uri` asks for the page after `token` in [`Mode::Pages`] (no version beside it).
#[cfg(test)]
pub(crate) fn next_page(uri: &str, token: &str) -> bool {
    uri.contains(&format!("limit={PAGE}"))
        && uri.contains(&format!("continue={token}"))
        && !uri.contains("resourceVersion")
}

/// Attempts of one paged list in all: it starts over when its continue token expired (410
/// Gone), so at most `ATTEMPTS - 1` times.
pub const ATTEMPTS: usize = 3;
/// Bytes read from the API server at a time (the decoder reads from this buffer).
const READ_BUFFER: usize = 256 * 1024;

/// How to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One list from the API server's watch cache (`resourceVersion=0`), streamed.
    Snapshot,
    /// Pages, from the watch cache where the API server can (1.34 and later).
    Pages,
}

impl Mode {
    /// The `mode` label of logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Snapshot => "snapshot",
            Mode::Pages => "pages",
        }
    }
}

/// Errors listing a resource.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request failed: no answer, or an error status (kube's error says which).
    #[error("{0}")]
    Request(#[source] kube::Error),
    /// The answer broke off or is not a list (a cut connection, a timeout on the server).
    #[error("the list broke off or is not a list: {0}")]
    Body(String),
    /// A paged list's continue token expired (410 Gone) on every attempt.
    #[error("the list's continue token expired {0} times (the API server compacted past it)")]
    Expired(usize),
    /// The decoding thread stopped.
    #[error("the list's decoder stopped: {0}")]
    Decoder(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the API server answered and refused (or cut off) the list, so that another
    /// [`Mode`] may succeed where this one did not. Not: no answer at all (the API server is
    /// down, which no mode changes), a missing resource, or a lack of permission.
    pub fn refused(&self) -> bool {
        match self {
            Error::Request(kube::Error::Api(status)) => {
                !matches!(status.code, 401 | 403 | 404 | 429)
            }
            Error::Request(_) | Error::Decoder(_) => false,
            Error::Body(_) | Error::Expired(_) => true,
        }
    }

    /// The API server's status code, if it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Request(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }
}

/// What a list hands on, in order.
#[derive(Debug)]
pub enum Item<'a> {
    /// The list starts over (a paged list's continue token expired): forget what it handed
    /// on so far.
    Restart,
    /// The next object's JSON.
    Object(&'a RawValue),
}

/// What takes a list's items, one at a time.
pub trait Each: Send + 'static {
    fn item(&mut self, item: Item<'_>);
}

impl<F: FnMut(Item<'_>) + Send + 'static> Each for F {
    fn item(&mut self, item: Item<'_>) {
        self(item)
    }
}

/// Lists every object of `resource` in the cluster the `mode` way (in pages: `page` objects
/// at a time), handing each to `each` on a blocking thread (decoding is CPU work) as it
/// arrives. Returns the list's `resourceVersion` (to watch from) and `each`.
pub async fn list<E: Each>(
    client: &Client,
    resource: &ApiResource,
    mode: Mode,
    page: u32,
    mut each: E,
) -> Result<(String, E)> {
    let request = Request::new(DynamicObject::url_path(resource, None));
    let mut attempt = 1;
    let mut token: Option<String> = None;
    // The first attempt's pages start at any state; after a 410, at the newest.
    let mut any_state = true;
    loop {
        let params = match mode {
            Mode::Snapshot => ListParams::default().match_any(),
            Mode::Pages => {
                let params = ListParams::default().limit(page);
                match &token {
                    // The token holds the version; the API server refuses one beside it.
                    Some(token) => params.continue_token(token),
                    None if any_state => {
                        params.at(ANY_VERSION).matching(VersionMatch::NotOlderThan)
                    }
                    None => params,
                }
            }
        };
        let http = request
            .list(&params)
            .map_err(|e| Error::Request(kube::Error::BuildRequest(e)))?;
        let body = match client.request_stream(http).await {
            Ok(body) => body,
            Err(kube::Error::Api(status))
                if status.code == 410 && mode == Mode::Pages && token.is_some() =>
            {
                if attempt == ATTEMPTS {
                    return Err(Error::Expired(attempt));
                }
                attempt += 1;
                // Worth a line: from here on the pages are consistent lists, which an API
                // server whose etcd sends no progress notifications reads from etcd (slower).
                info!(
                    resource = %resource.plural,
                    attempt,
                    "the list's continue token expired (410 Gone): listing again from the newest state"
                );
                token = None;
                any_state = false;
                each.item(Item::Restart);
                continue;
            }
            Err(e) => return Err(Error::Request(e)),
        };
        let reader = SyncIoBridge::new(body.compat());
        // What `each` logs goes where the caller's logs go.
        let (dispatch, span) = (dispatcher::get_default(Clone::clone), Span::current());
        let (meta, returned) = tokio::task::spawn_blocking(move || {
            let meta = dispatcher::with_default(&dispatch, || {
                span.in_scope(|| decode(BufReader::with_capacity(READ_BUFFER, reader), &mut each))
            });
            (meta, each)
        })
        .await
        .map_err(|e| Error::Decoder(e.to_string()))?;
        each = returned;
        let meta = meta?;
        match meta.continue_.filter(|t| !t.is_empty()) {
            Some(next) if mode == Mode::Pages => token = Some(next),
            _ => return Ok((meta.resource_version.unwrap_or_default(), each)),
        }
    }
}

/// A list's own metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    continue_: Option<String>,
}

/// Reads a list's JSON from `reader`, handing each item to `each` as it is read.
fn decode(reader: impl std::io::Read, each: &mut dyn Each) -> Result<ListMeta> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let meta = (ListSeed(each))
        .deserialize(&mut de)
        .and_then(|meta| de.end().map(|()| meta))
        .map_err(|e| Error::Body(e.to_string()))?;
    Ok(meta)
}

/// The list object: `metadata` kept, `items` handed on one by one, the rest skipped.
struct ListSeed<'f>(&'f mut dyn Each);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ListMeta;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListMeta, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ListMeta;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListMeta, A::Error> {
        let mut meta = ListMeta::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "metadata" => meta = map.next_value()?,
                "items" => map.next_value_seed(ItemsSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(meta)
    }
}

/// `items`: each one handed on as its JSON text (`null`: none).
struct ItemsSeed<'f>(&'f mut dyn Each);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            self.0.item(Item::Object(&item));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(json: &str) -> Result<(ListMeta, Vec<String>)> {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        let meta = decode(json.as_bytes(), &mut move |item: Item<'_>| {
            into.lock().unwrap().push(match item {
                Item::Object(raw) => raw.get().to_string(),
                Item::Restart => "restart".into(),
            })
        })?;
        let seen = seen.lock().unwrap().clone();
        Ok((meta, seen))
    }

    #[test]
    fn items_are_handed_on_in_order_with_the_list_metadata_wherever_it_is() {
        let (meta, items) = names(
            r#"{"kind": "VirtualMachineList", "items": [{"a": 1}, {"b": [2, {"c": "]"}]}],
                "metadata": {"resourceVersion": "42", "continue": "t"}, "apiVersion": "kubevirt.io/v1"}"#,
        )
        .unwrap();
        assert_eq!(items, [r#"{"a": 1}"#, r#"{"b": [2, {"c": "]"}]}"#]);
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert_eq!(meta.continue_.as_deref(), Some("t"));
        let (_, none) = names(r#"{"metadata": {}, "items": null}"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_list_cut_off_is_an_error_after_the_items_it_held() {
        let full = r#"{"metadata": {"resourceVersion": "7"}, "items": [{"a": 1}, {"b": 2}]}"#;
        for cut in [full.len() - 1, full.len() - 12, 40] {
            let e = decode(&full.as_bytes()[..cut], &mut |_: Item<'_>| {}).unwrap_err();
            assert!(matches!(e, Error::Body(_)) && e.refused(), "{e}");
        }
        for not_a_list in ["[]", "{\"items\": 5}", "{} {}", "<html>"] {
            assert!(
                matches!(names(not_a_list), Err(Error::Body(_))),
                "{not_a_list}"
            );
        }
    }

    #[test]
    fn refusals_are_told_from_outages_and_permissions() {
        let status = |code| {
            Error::Request(kube::Error::Api(Box::new(
                kube::core::Status::failure("no", "InternalError").with_code(code),
            )))
        };
        for code in [500, 504, 410, 400] {
            assert!(status(code).refused(), "{code}");
        }
        for code in [401, 403, 404, 429] {
            assert!(!status(code).refused(), "{code}");
        }
        assert!(!Error::Request(kube::Error::LinesCodecMaxLineLengthExceeded).refused());
    }
}
