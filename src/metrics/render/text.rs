//! Writing the text format: HELP/TYPE headers, samples, labels with their escaping, values.

use std::io::Write as _;

use super::catalog::{Family, Value};

pub(super) fn header(out: &mut Vec<u8>, ns: &str, family: &Family) {
    // HELP texts are constants without backslashes or line feeds, so they need no escaping.
    let _ = write!(
        out,
        "# HELP {ns}_{name} {help}\n# TYPE {ns}_{name} {kind}\n",
        name = family.name,
        help = family.help,
        kind = family.kind.as_str()
    );
}

pub(super) fn sample(out: &mut Vec<u8>, ns: &str, family: &Family, labels: &[u8], value: Value) {
    metric_name(out, ns, family);
    out.push(b'{');
    out.extend_from_slice(labels);
    out.extend_from_slice(b"} ");
    write_value(out, value);
    out.push(b'\n');
}

/// A sample with one extra label after the shared block.
pub(super) fn sample_with(
    out: &mut Vec<u8>,
    ns: &str,
    family: &Family,
    labels: &[u8],
    extra: (&str, &str),
    value: Value,
) {
    metric_name(out, ns, family);
    out.push(b'{');
    out.extend_from_slice(labels);
    label(out, extra.0, extra.1, false);
    out.extend_from_slice(b"} ");
    write_value(out, value);
    out.push(b'\n');
}

pub(super) fn metric_name(out: &mut Vec<u8>, ns: &str, family: &Family) {
    out.extend_from_slice(ns.as_bytes());
    out.push(b'_');
    out.extend_from_slice(family.name.as_bytes());
}

/// Writes `name="value"` (with a leading comma unless `first`), escaping the value.
pub(super) fn label(out: &mut Vec<u8>, name: &str, value: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_label_value(out, value);
    out.push(b'"');
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, line feed → `\n`; everything else is copied.
pub fn escape_label_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escaped);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

pub(super) fn write_value(out: &mut Vec<u8>, value: Value) {
    match value {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(v) => write_f64(out, v),
    }
}

/// Writes a float the way Prometheus reads it back exactly.
pub(super) fn write_f64(out: &mut Vec<u8>, v: f64) {
    let _ = if v.is_nan() {
        out.write_all(b"NaN")
    } else if v.is_infinite() {
        out.write_all(if v > 0.0 { b"+Inf" } else { b"-Inf" })
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Exact: every integer below 2^53 converts without loss.
        write!(out, "{}", v as i64)
    } else if v.abs() >= 1e15 || v.abs() < 1e-4 {
        write!(out, "{v:e}")
    } else {
        // Rust's shortest round-trip representation, without an exponent.
        write!(out, "{v}")
    };
}
