//! JSON the way EventoDB's Go server writes it (`encoding/json`), and numbers
//! the way it reads them.
//!
//! Go's encoder differs from serde_json's defaults in three visible ways:
//! `<`, `>`, `&`, U+2028 and U+2029 inside strings are written as `\u003c`-
//! style escapes; floats are printed in the shortest form that round-trips,
//! with an exponent only below 1e-6 or from 1e21 on (`1e+21`, `1e-7`); and
//! object keys come out sorted (serde_json's default map is sorted already).
//! EventoDB's own integers (positions, counts, error details) are int64s and
//! come out exactly; the numbers of user data are float64s, because requests
//! are decoded into float64s — so integers beyond 2^53 lose precision and are
//! printed as floats. [`normalize_numbers`] gives a value those float64
//! semantics (before it is stored, and again before a stored one is sent).

use std::io::{self, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Number, Value};

/// serde_json formatter that writes what Go's `encoding/json` writes.
struct GoFormatter;

impl Formatter for GoFormatter {
    // Integers keep serde_json's exact output, as Go writes its int64 fields
    // (positions, counts, error details). The numbers of user data are
    // float64s in Go: they pass through `normalize_numbers` first, which
    // turns integers beyond 2^53 into floats.

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        write_go_float(writer, f64::from(value))
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        write_go_float(writer, value)
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json has already escaped quotes, backslashes and control
        // characters; Go also escapes these, for embedding in HTML.
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Go's float64 encoding (`strconv.AppendFloat(f, 'f' or 'e', -1, 64)` plus
/// encoding/json's exponent clean-up).
fn write_go_float<W: ?Sized + Write>(writer: &mut W, value: f64) -> io::Result<()> {
    let abs = value.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1e21` / `1.5e-7`; Go writes `1e+21` / `1.5e-7`.
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => {
                write!(writer, "{mantissa}e+{exp}")
            }
            _ => writer.write_all(text.as_bytes()),
        }
    } else {
        // Display is the shortest round-trip form without an exponent.
        write!(writer, "{value}")
    }
}

/// A JSON value whose objects serialize with their keys sorted bytewise,
/// as Go writes maps — whatever map type serde_json was built with (an
/// application enabling serde_json's `preserve_order` must not change the
/// server's output).
pub(crate) struct Sorted<'a>(pub(crate) &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

/// `serialize_with` helper for `Value` fields of structs written Go-style.
pub(crate) fn sorted<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    Sorted(value).serialize(serializer)
}

/// `serialize_with` helper for `Option<Value>` fields.
pub(crate) fn sorted_option<S: Serializer>(
    value: &Option<Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.as_ref().map(Sorted).serialize(serializer)
}

/// Appends `value` (a struct or a [`Sorted`] value) encoded as Go's
/// `json.Marshal` would to `out`.
pub(crate) fn write_go<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(out, GoFormatter);
    // Serializing plain data into a Vec cannot fail.
    value
        .serialize(&mut ser)
        .expect("JSON encoding into memory cannot fail");
}

/// `value` encoded as Go's `json.Marshal` would (keys sorted).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn to_go_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_go(&mut out, &Sorted(value));
    out
}

/// `value` encoded as Go's `json.Marshal` would, as a string.
/// The bytes of the JSON text `text` outside its string literals (the
/// quotes too are left out): what a byte scan of its structure — brackets,
/// braces — looks at, nothing parsed or built.
pub(crate) fn outside_strings(text: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    text.iter().copied().filter(move |&b| {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            return false;
        }
        in_string = b == b'"';
        !in_string
    })
}

#[cfg(test)]
pub(crate) fn to_go_string(value: &Value) -> String {
    String::from_utf8(to_go_vec(value)).expect("serde_json writes UTF-8")
}

/// Gives every number in `value` float64 semantics, as Go's decoder does:
/// every number becomes the nearest float64; integral values up to 2^53
/// stay integers (so the embedded store keeps reading them as integers);
/// other values, larger integers included, become floats (written as Go
/// writes a float64: `12345678901234567890` comes out as
/// `12345678901234567000`).
pub(crate) fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => *n = float64_number(n),
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

fn float64_number(n: &Number) -> Number {
    // 2^53: beyond it, not every integer is a float64.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.as_i64().is_some_and(|i| i.unsigned_abs() <= 1 << 53) {
        return n.clone();
    }
    // Every JSON number serde_json parses has an f64 value.
    let f = n.as_f64().unwrap_or(0.0);
    let integral = f.fract() == 0.0 && !(f == 0.0 && f.is_sign_negative());
    if integral && f.abs() <= EXACT {
        Number::from(f as i64)
    } else {
        Number::from_f64(f).unwrap_or_else(|| Number::from(0))
    }
}

/// `value` with float64 numbers (as [`normalize_numbers`] gives them),
/// serialized without copying it.
struct AsFloat64<'a>(&'a Value);

impl Serialize for AsFloat64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Number(n) => float64_number(n).serialize(serializer),
            Value::Array(items) => serializer.collect_seq(items.iter().map(AsFloat64)),
            Value::Object(map) => {
                serializer.collect_map(map.iter().map(|(k, v)| (k, AsFloat64(v))))
            }
            other => other.serialize(serializer),
        }
    }
}

/// The JSON text EventoDB stores for a message's data or metadata: its
/// numbers decoded into float64s and written as Go writes them, so that
/// reading it back gives the very value a read over HTTP gives
/// (`9007199254740993` → `9007199254740992`, `5.0` → `5`,
/// `12345678901234567890` → `12345678901234567000`).
pub(crate) fn to_stored_text(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    AsFloat64(value)
        .serialize(&mut ser)
        .expect("JSON encoding into memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Whether serde_json gave up on input nested deeper than it reads (128
/// levels): the one place that knows how it says so.
pub(crate) fn is_too_deep(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("recursion limit exceeded")
}

/// The number at `value` truncated toward zero to an integer, as Go's
/// `int64(v.(float64))` (saturating where Go's result is undefined).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn truncate_to_i64(value: &Value) -> Option<i64> {
    value.as_f64().map(|f| f.trunc() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn outside_strings_skips_string_literals_and_their_escapes() {
        let text = br#"{"a[":["x\"]{",1],"b":{}}"#;
        let kept: Vec<u8> = outside_strings(text).collect();
        assert_eq!(kept, b"{:[,1],:{}}");
    }

    use super::*;
    use serde_json::json;

    fn go(v: &Value) -> String {
        to_go_string(v)
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            go(&json!("<a href=\"x\">&</a>")),
            r#""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e""#
        );
        assert_eq!(go(&json!("\u{2028}x\u{2029}")), r#""\u2028x\u2029""#);
        assert_eq!(
            go(&json!("tab\tnl\ncr\r\u{1}\u{8}\u{c}é🚀")),
            "\"tab\\tnl\\ncr\\r\\u0001\\b\\fé🚀\""
        );
        assert_eq!(go(&json!({"<": 1})), r#"{"\u003c":1}"#);
    }

    #[test]
    fn sorts_keys_bytewise() {
        let v: Value =
            serde_json::from_str(r#"{"position":0,"globalPosition":7,"B":1,"a":2}"#).unwrap();
        assert_eq!(go(&v), r#"{"B":1,"a":2,"globalPosition":7,"position":0}"#);
    }

    #[test]
    fn numbers_like_go_float64() {
        let cases = [
            ("1", "1"),
            ("-42", "-42"),
            ("1.0", "1"),
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("-0", "-0"),
            ("-0.0", "-0"),
            ("1e20", "100000000000000000000"),
            ("1e21", "1e+21"),
            ("123456789e20", "1.23456789e+28"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1.5e-10", "1.5e-10"),
            ("9007199254740993", "9007199254740992"),
            ("12345678901234567890", "12345678901234567000"),
            ("-9223372036854775808", "-9223372036854776000"),
        ];
        for (input, want) in cases {
            let mut v: Value = serde_json::from_str(input).unwrap();
            normalize_numbers(&mut v);
            assert_eq!(go(&v), want, "{input}");
        }
    }

    #[test]
    fn stored_text_reads_back_as_go_writes_it() {
        let v = json!({"big": 9_007_199_254_740_993u64, "huge": 12_345_678_901_234_567_890u64,
                        "neg": -9_007_199_254_740_993i64, "five": 5.0, "x": [1e21, 0.1, "<&>"]});
        let text = to_stored_text(&v);
        let mut normalized = v.clone();
        normalize_numbers(&mut normalized);
        assert_eq!(text, to_go_string(&normalized));
        let back: Value = serde_json::from_str(&text).unwrap();
        let over_http: Value = serde_json::from_slice(&to_go_vec(&normalized)).unwrap();
        assert_eq!(back, over_http);
        assert_eq!(back["big"], json!(9_007_199_254_740_992u64));
        assert_eq!(back["huge"], json!(12_345_678_901_234_567_000u64));
        assert_eq!(back["five"], json!(5));
    }

    #[test]
    fn integral_numbers_stay_integers_after_normalizing() {
        let mut v = json!({"a": 1.0, "b": [2.5, 3], "c": -7.0, "d": 1e19, "e": 9_007_199_254_740_992i64, "f": u64::MAX});
        normalize_numbers(&mut v);
        assert_eq!(v["a"].as_i64(), Some(1));
        assert_eq!(v["b"][0].as_f64(), Some(2.5));
        assert_eq!(v["b"][1].as_i64(), Some(3));
        assert_eq!(v["c"].as_i64(), Some(-7));
        assert_eq!(v["d"].as_f64(), Some(1e19));
        assert_eq!(v["e"].as_i64(), Some(9_007_199_254_740_992));
        assert_eq!(v["f"].as_f64(), Some(18_446_744_073_709_551_615.0));
        assert_eq!(
            go(&v),
            r#"{"a":1,"b":[2.5,3],"c":-7,"d":10000000000000000000,"e":9007199254740992,"f":18446744073709552000}"#
        );
        // Integers that are not data (positions, counts) come out exactly.
        assert_eq!(
            go(&json!([i64::MAX, i64::MIN])),
            "[9223372036854775807,-9223372036854775808]"
        );
        assert_eq!(truncate_to_i64(&json!(-2.9)), Some(-2));
        assert_eq!(truncate_to_i64(&json!("2")), None);
    }
}
