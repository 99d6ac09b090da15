//! Moving messages between stores as NDJSON in EventoDB's export format
//! (`eventodb export` / `POST /import`): one JSON object per line with the
//! keys `id, stream, type, pos, gpos, data, meta, time`.
//!
//! [`export`] reads any [`MessageStore`]; [`EmbeddedStore::import_ndjson`]
//! and [`HttpStore::import_ndjson`] load the records with their ids,
//! positions and times kept — e.g. from a device's embedded store into a
//! real EventoDB:
//!
//! ```
//! use eventodb_kit::store::ndjson;
//! use eventodb_kit::{EmbeddedStore, MessageStore, NewMessage, StreamQuery, WriteOptions};
//!
//! let device = EmbeddedStore::open_in_memory()?;
//! device.write("account-1", &NewMessage::new("Opened", serde_json::json!({ "owner": "ann" })), &WriteOptions::new())?;
//! let mut records = Vec::new();
//! assert_eq!(ndjson::export(&device, "", &mut records, &mut |_| {})?, 1);
//!
//! let server = EmbeddedStore::open_in_memory()?; // or an HttpStore
//! server.import_ndjson(&mut &records[..], false, &mut |_| {})?;
//! let copied = server.get_stream("account-1", &StreamQuery::new())?;
//! assert_eq!(copied[0].data["owner"], "ann");
//! # Ok::<(), eventodb_kit::Error>(())
//! ```
//!
//! [`EmbeddedStore::import_ndjson`]: crate::EmbeddedStore::import_ndjson
//! [`HttpStore::import_ndjson`]: crate::HttpStore::import_ndjson

use std::io::Write;

use crate::error::Result;
use crate::store::{CategoryQuery, MessageStore};
use crate::wire::ndjson::Record;

/// Writes every message of `category` (`""`: of the whole namespace) to
/// `out` as NDJSON, one record per line in global order, and returns how
/// many. Calls `on_batch` with the number written so far after each batch
/// read (1000 messages).
///
/// Times are written to the second, as EventoDB's export does.
pub fn export(
    store: &dyn MessageStore,
    category: &str,
    out: &mut dyn Write,
    on_batch: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut position = 1;
    let mut count = 0;
    loop {
        let batch = store.get_category(category, &CategoryQuery::new().position(position))?;
        let Some(last) = batch.last() else {
            out.flush()?;
            return Ok(count);
        };
        position = last.global_position + 1;
        for m in &batch {
            out.write_all(&Record::from_message(m).to_line())?;
            count += 1;
        }
        on_batch(count);
    }
}
