//! How metrics serialize: durations as seconds (a float), instants as RFC 3339
//! UTC strings, consumer groups as `{ "member": m, "size": n }`.

use std::time::{Duration, SystemTime};

use serde::ser::SerializeStruct;
use serde::Serializer;

use crate::consumer_group::ConsumerGroup;
use crate::time::format_rfc3339_nanos;

pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

pub(crate) fn time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339_nanos(*t))
}

pub(crate) fn opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&format_rfc3339_nanos(*t)),
        None => s.serialize_none(),
    }
}

pub(crate) fn opt_group<S: Serializer>(g: &Option<ConsumerGroup>, s: S) -> Result<S::Ok, S::Error> {
    struct Group(ConsumerGroup);
    impl serde::Serialize for Group {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("ConsumerGroup", 2)?;
            st.serialize_field("member", &self.0.member())?;
            st.serialize_field("size", &self.0.size())?;
            st.end()
        }
    }
    match g {
        Some(g) => s.serialize_some(&Group(*g)),
        None => s.serialize_none(),
    }
}
