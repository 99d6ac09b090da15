//! EventoDB's JSON dialect, in one place for both halves of the kit that
//! speak it: the HTTP client ([`HttpStore`](crate::HttpStore)) and the
//! server (feature `server`).
//!
//! * [`json`] — Go `encoding/json` output (escapes, exact int64s and float64 data numbers, sorted keys);
//! * [`rpc`] — `/rpc` request arrays and result shapes;
//! * [`error`] — the error envelope of every JSON error answer;
//! * [`sse`] — `/subscribe` poke events;
//! * [`ndjson`] — export/import records and `/import` progress lines;
//! * [`undecodable`] — reads that meet a message serde_json cannot decode.
//!
//! Everything follows `eventodb-protocol.md` (§3–§5, §10, §11).

pub(crate) mod error;
pub(crate) mod json;
pub(crate) mod ndjson;
pub(crate) mod rpc;
pub(crate) mod sse;
pub(crate) mod undecodable;
