//! The JSON log format (`--log-format json`), written straight into one buffer.
//!
//! The server logs a line per request (SPEC §3), so the formatter is on the request path.
//! tracing-subscriber's JSON formatter writes each line through an adaptor that takes every
//! fragment serde_json produces (a quote, a key, a colon) as bytes, checks them for UTF-8 and
//! writes them to the line one at a time: the admission line took about 4 µs of a request's
//! CPU in `benches/profile.sh`. [`JsonLines`] writes the same line with serde_json into a
//! byte buffer and hands it over once. Events inside a span and events forwarded from the
//! `log` crate, which the stock formatter enriches (span fields, the log record's target),
//! are left to it; the line is the same either way (`same_lines_as_the_stock_formatter`).
use std::{
    cell::RefCell,
    fmt::{self, Write as _},
};

use serde::Serialize;
use tracing::{Event, Subscriber, field::Field};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// The JSON event format; see the module documentation.
#[derive(Debug)]
pub struct JsonLines {
    stock: Format<Json, SystemTime>,
}

impl Default for JsonLines {
    fn default() -> Self {
        Self {
            stock: tracing_subscriber::fmt::format().json(),
        }
    }
}

/// The fields formatter that goes with [`JsonLines`] (the stock formatter's, for spans).
pub type JsonLinesFields = JsonFields;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The same test as the stock formatter's for whether the line names a span.
        let in_span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current())
            .is_some();
        if in_span || event.is_log() {
            return self.stock.format_event(ctx, writer, event);
        }
        thread_local! {
            /// A line's buffers, kept for the next line on this thread.
            static BUFFERS: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
        }
        BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
            Ok(mut buffers) => {
                let (out, text) = &mut *buffers;
                write_line(event, out, text, &mut writer)
            }
            // A field's `Debug` that logs: that line gets buffers of its own.
            Err(_) => write_line(event, &mut Vec::new(), &mut String::new(), &mut writer),
        })
    }
}

/// Buffers that grew past this for a long line are not kept.
const KEPT_CAPACITY: usize = 16 * 1024;

/// Writes the line of `event` to `writer`, building it in `out` and `text`.
fn write_line(
    event: &Event<'_>,
    out: &mut Vec<u8>,
    text: &mut String,
    writer: &mut Writer<'_>,
) -> fmt::Result {
    out.clear();
    text.clear();
    let written = line(event, out, text)
        .map_err(|_| fmt::Error)
        .and_then(|()| {
            // serde_json writes UTF-8 only; the check is one pass over a few hundred bytes.
            writer.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)?;
            writer.write_char('\n')
        });
    if out.capacity() > KEPT_CAPACITY {
        *out = Vec::new();
    }
    if text.capacity() > KEPT_CAPACITY {
        *text = String::new();
    }
    written
}

/// The timestamp of a line: the stock formatter's (RFC 3339, UTC, to the microsecond), with
/// all but the fraction formatted once a second per thread. Formatting the whole date took a
/// fifth of the line's cost.
fn stamp(out: &mut String) -> fmt::Result {
    thread_local! {
        /// The Unix second last formatted, and the stamp's text before its fraction then.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
    };
    // A clock before 1970 is left to the stock formatter, every time.
    let Some(now) = since_epoch() else {
        return SystemTime.format_time(&mut Writer::new(out));
    };
    let written = SECOND.with(|second| {
        let second = second.try_borrow().ok()?;
        (second.0 == now.as_secs()).then(|| {
            out.push_str(&second.1);
            fraction(out, now.subsec_micros());
        })
    });
    if written.is_some() {
        return Ok(());
    }
    let start = out.len();
    SystemTime.format_time(&mut Writer::new(out))?;
    // The stock stamp is of a moment between `now` and `after`: of `now`'s second if both are.
    let same_second = since_epoch().is_some_and(|after| after.as_secs() == now.as_secs());
    if let (true, Some(dot)) = (same_second, out[start..].rfind('.')) {
        SECOND.with(|second| {
            if let Ok(mut second) = second.try_borrow_mut() {
                second.0 = now.as_secs();
                second.1.clear();
                second.1.push_str(&out[start..start + dot]);
            }
        });
    }
    Ok(())
}

/// `.123456Z`: the fraction of a stamp, as the stock formatter writes it (`{:06}`).
fn fraction(out: &mut String, micros: u32) {
    let mut digits = [b'0'; 6];
    let mut rest = micros.min(999_999);
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push('.');
    out.extend(digits.iter().map(|&d| char::from(d)));
    out.push('Z');
}

/// `{"timestamp":…,"level":…,"fields":{…},"target":…}`, in the stock formatter's order.
/// `out` and `text` come empty.
fn line(event: &Event<'_>, out: &mut Vec<u8>, text: &mut String) -> serde_json::Result<()> {
    let meta = event.metadata();
    // The timestamp is formatted in the scratch space that `Debug` values reuse later.
    stamp(text).map_err(serde::ser::Error::custom)?;
    out.extend_from_slice(b"{\"timestamp\":");
    string(out, text)?;
    out.extend_from_slice(b",\"level\":");
    string(out, meta.level().as_str())?;
    out.extend_from_slice(b",\"fields\":{");
    let mut fields = Fields {
        out,
        text,
        first: true,
        error: None,
    };
    event.record(&mut fields);
    if let Some(error) = fields.error {
        return Err(error);
    }
    out.extend_from_slice(b"},\"target\":");
    string(out, meta.target())?;
    out.push(b'}');
    Ok(())
}

/// `text` as a JSON string, as serde_json writes it. Most field names and values need no
/// escape (no quote, backslash or control character): those are copied between quotes, not
/// escaped a byte at a time, which was a third of the line's cost.
fn string(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, text)
    }
}

/// Writes an event's fields as JSON members, the way tracing-serde's map visitor (which the
/// stock formatter uses) writes them: `Debug` and `Display` values as strings, numbers and
/// booleans as such, in the order recorded.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    /// Scratch space for values formatted with `Debug`.
    text: &'a mut String,
    first: bool,
    error: Option<serde_json::Error>,
}

impl Fields<'_> {
    /// Keeps the first error; the line is dropped then.
    fn keep(&mut self, result: serde_json::Result<()>) {
        if let (None, Err(error)) = (&self.error, result) {
            self.error = Some(error);
        }
    }

    /// `"name":`, after a comma if it is not the first.
    fn name(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        let written = string(self.out, field.name());
        self.keep(written);
        self.out.push(b':');
    }

    fn member<T: Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        self.name(field);
        let written = serde_json::to_writer(&mut *self.out, value);
        self.keep(written);
    }

    fn member_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        let written = string(self.out, value);
        self.keep(written);
    }
}

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = std::mem::take(&mut *self.text);
        text.clear();
        if write!(text, "{value:?}").is_err() {
            self.error = Some(serde::ser::Error::custom("a field's Debug failed"));
        }
        self.member_str(field, &text);
        *self.text = text;
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member_str(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, &value);
    }
}

#[cfg(test)]
mod tests {
    use tracing::{info, info_span, warn};

    use super::*;
    use crate::{server::logfmt::Escaped, test_log::Lines};

    /// The lines, with the timestamps (which differ between runs) blanked.
    fn blanked(lines: &Lines) -> String {
        lines
            .text()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let stamp = value["timestamp"].as_str().unwrap();
                // RFC 3339 in UTC, to the microsecond.
                assert_eq!(stamp.len(), 27, "{stamp}");
                assert!(stamp.ends_with('Z'), "{stamp}");
                line.replacen(stamp, "T", 1) + "\n"
            })
            .collect()
    }

    fn events() {
        let uid = "7f0\"quote\\ \n\u{1b}[31m größe\u{202e}";
        info!(
            uid = %Escaped(uid),
            kind = %Escaped("VirtualMachine"),
            namespace = "tenant-a",
            operation = "CREATE",
            dry_run = false,
            allowed = true,
            latency_ms = 0.125,
            count = 3u64,
            delta = -4i64,
            big = 1u128 << 100,
            nan = f64::NAN,
            endpoint = "/mutate",
            "admission"
        );
        let error = std::io::Error::other("broken \"pipe\"\tand\nmore");
        warn!(error = %error, debugged = ?("a", 1), "cannot {} {:?}", "write", "x\"y");
        info!(target: "custom::target", "no fields but the message");
        let span = info_span!("request", uid = "u-1", attempt = 2);
        span.in_scope(|| info!(inner = true, "inside a span"));
        info!(parent: &span, "explicit parent");
        // As rustls' `log` records reach the subscriber (LogTracer): the stock formatter
        // names the record's own target.
        let record = tracing_log::log::Record::builder()
            .args(format_args!("from the log crate"))
            .level(tracing_log::log::Level::Warn)
            .target("rustls::server")
            .build();
        tracing_log::format_trace(&record).unwrap();
    }

    /// Every byte value alone and amid text, Unicode, quotes: as serde_json writes them.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut texts: Vec<String> = (0..=0x7f_u8)
            .map(|b| char::from(b).to_string())
            .chain((0..=0x7f_u8).map(|b| format!("vm-{}-x", char::from(b))))
            .collect();
        texts.extend(
            [
                "",
                "größe",
                "\u{202e}",
                "\u{2028}",
                "tab\there",
                "say \"hi\"",
                "a\\b",
            ]
            .map(String::from),
        );
        for text in &texts {
            let mut ours = Vec::new();
            string(&mut ours, text).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn fractions_are_written_as_the_stock_formatter_writes_them() {
        for micros in [0, 7, 42, 1_000, 123_456, 999_999] {
            let mut ours = String::new();
            fraction(&mut ours, micros);
            assert_eq!(ours, format!(".{micros:06}Z"));
        }
    }

    /// Stamps in time order with the stock formatter's (fixed-width RFC 3339 sorts as time
    /// does), so a wrong cached second, minute or date fails. Only the first stamp of each
    /// second is formatted whole, so the pairs within one second compare cached stamps.
    #[test]
    fn cached_stamps_read_as_the_stock_formatters() {
        let now = || {
            let mut text = String::new();
            stamp(&mut text).unwrap();
            text
        };
        let mut within_a_second = 0;
        for _ in 0..2_000 {
            let before = now();
            let mut stock = String::new();
            SystemTime
                .format_time(&mut Writer::new(&mut stock))
                .unwrap();
            let after = now();
            assert_eq!((before.len(), after.len()), (stock.len(), stock.len()));
            assert!(
                before <= stock && stock <= after,
                "{before} {stock} {after}"
            );
            if before[..20] == after[..20] {
                within_a_second += 1;
            }
        }
        assert!(within_a_second > 1_000, "{within_a_second}");
    }

    /// Every kind of field, escapes, Unicode, a span: our lines equal the stock formatter's
    /// once the timestamps are blanked, byte for byte (so also in field order).
    #[test]
    fn same_lines_as_the_stock_formatter() {
        let ours = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ours.clone())
            .with_ansi(false)
            .fmt_fields(JsonLinesFields::new())
            .event_format(JsonLines::default())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let stock = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(stock.clone())
            .with_ansi(false)
            .json()
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let (ours, stock) = (blanked(&ours), blanked(&stock));
        assert_eq!(ours, stock);
        assert_eq!(ours.lines().count(), 6, "{ours}");
        assert!(ours.contains(r#""target":"rustls::server""#), "{ours}");
        assert!(
            ours.contains(r#""uid":"7f0\"quote\\\\ \\n\\u{1b}[31m größe\\u{202e}""#),
            "{ours}"
        );
        assert!(ours.contains(r#""latency_ms":0.125"#), "{ours}");
        assert!(ours.contains(r#""nan":null"#), "{ours}");
        assert!(
            ours.contains(r#""big":"1267650600228229401496703205376""#),
            "{ours}"
        );
        assert!(ours.contains(r#""spans":[{"#), "{ours}");
    }
}
