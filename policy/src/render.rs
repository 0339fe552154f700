//! Renderers for diagnostics: rustc-like text, JSON, GitHub workflow commands and SARIF 2.1.0.
//! They return strings; printing is the caller's business.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use crate::codes;
use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::source::{SourceFile, SourceMap};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Rustc-like text with source lines and carets.
    Human,
    /// A JSON array.
    Json,
    /// GitHub Actions workflow commands.
    Github,
    /// A SARIF 2.1.0 log.
    Sarif,
}

/// Renders `diags` in `format`. `color` adds ANSI colours (human format only).
#[must_use]
pub fn render(map: &SourceMap, diags: &[Diagnostic], format: Format, color: bool) -> String {
    match format {
        Format::Human => {
            let mut out = String::new();
            for d in diags {
                out.push_str(&human(map, d, color));
                out.push('\n');
            }
            out
        }
        Format::Json => {
            let items: Vec<Json> = diags.iter().map(|d| json_diag(map, d)).collect();
            let mut s = serde_json::to_string_pretty(&Json::Array(items)).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Github => diags.iter().map(|d| github(map, d)).collect(),
        Format::Sarif => {
            let mut s = serde_json::to_string_pretty(&sarif(map, diags)).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}

/// A one-line summary (`2 errors, 1 warning`).
#[must_use]
pub fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Rustc-like rendering of one diagnostic.
#[must_use]
pub fn human(map: &SourceMap, d: &Diagnostic, color: bool) -> String {
    let p = Paint(color);
    let sev_color = if d.is_error() { "1;31" } else { "1;33" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}{}",
        p.wrap(
            sev_color,
            &format!("{}[{}]", severity_word(d.severity), d.code)
        ),
        p.wrap("1", &format!(": {}", d.message))
    );
    let Some(file) = map.get(d.primary.file) else {
        return out;
    };
    let mut lines: Vec<(&Label, bool)> = vec![(&d.primary, true)];
    lines.extend(d.labels.iter().map(|l| (l, false)));
    let width = lines
        .iter()
        .filter_map(|(l, _)| map.get(l.file).map(|f| f.line_col(l.span.start).line))
        .max()
        .unwrap_or(1)
        .to_string()
        .len();
    let pad = " ".repeat(width);
    let at = file.line_col(d.primary.span.start);
    let _ = writeln!(
        out,
        "{pad}{} {}:{}:{}",
        p.wrap("1;34", "-->"),
        file.name,
        at.line,
        at.col
    );
    let _ = writeln!(out, "{pad} {}", p.wrap("1;34", "|"));
    // Labels in the primary file in source order, then labels in other files.
    lines.sort_by_key(|(l, _)| (l.file != d.primary.file, l.file, l.span.start));
    let mut prev: Option<(crate::diagnostic::FileId, u32)> = None;
    for (label, primary) in lines {
        let Some(f) = map.get(label.file) else {
            continue;
        };
        let line = f.line_col(label.span.start).line;
        if label.file != d.primary.file && prev.map(|(pf, _)| pf) != Some(label.file) {
            let lc = f.line_col(label.span.start);
            let _ = writeln!(
                out,
                "{pad}{} {}:{}:{}",
                p.wrap("1;34", ":::"),
                f.name,
                lc.line,
                lc.col
            );
        } else if let Some((_, pl)) = prev
            && line > pl + 1
        {
            let _ = writeln!(out, "{}", p.wrap("1;34", "..."));
        }
        prev = Some((label.file, line));
        snippet(&mut out, f, label, primary, width, &p, sev_color);
    }
    if let Some(help) = &d.help {
        let _ = writeln!(
            out,
            "{pad} {} {}: {help}",
            p.wrap("1;34", "="),
            p.wrap("1", "help")
        );
    }
    if let Some(n) = d.ngrok_code {
        let _ = writeln!(
            out,
            "{pad} {} {}: ngrok reports ERR_NGROK_{n}",
            p.wrap("1;34", "="),
            p.wrap("1", "note")
        );
    }
    out
}

/// Longest source line shown in full; longer lines show a window around the span.
const MAX_LINE: usize = 160;

fn snippet(
    out: &mut String,
    f: &SourceFile,
    label: &Label,
    primary: bool,
    width: usize,
    p: &Paint,
    sev: &str,
) {
    let start = f.line_col(label.span.start);
    let end = f.line_col(label.span.end);
    let text = f.line_text(start.line);
    let chars: Vec<char> = text
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let first = start.col as usize - 1;
    let last = if end.line == start.line {
        end.col as usize - 1
    } else {
        chars.len()
    };
    // A window of the line around the span start when the line is long.
    let (from, prefix) = if chars.len() > MAX_LINE && first > 40 {
        (first - 40, "…")
    } else {
        (0, "")
    };
    let to = (from + MAX_LINE).min(chars.len());
    let suffix = if to < chars.len() { "…" } else { "" };
    let shown: String = chars[from..to].iter().collect();
    let caret_at = first - from + prefix.chars().count();
    let count = last.min(to).saturating_sub(first).max(1);
    let marker = if primary { "^" } else { "-" };
    let color = if primary { sev } else { "1;34" };
    let _ = writeln!(
        out,
        "{} {} {prefix}{shown}{suffix}",
        p.wrap("1;34", &format!("{:>width$}", start.line)),
        p.wrap("1;34", "|")
    );
    let mut under = " ".repeat(caret_at);
    under.push_str(&marker.repeat(count));
    if let Some(m) = &label.message {
        under.push(' ');
        under.push_str(m);
    }
    let _ = writeln!(
        out,
        "{} {} {}",
        " ".repeat(width),
        p.wrap("1;34", "|"),
        p.wrap(color, &under)
    );
}

fn position(map: &SourceMap, label: &Label) -> Json {
    let Some(f) = map.get(label.file) else {
        return Json::Null;
    };
    let s = f.line_col(label.span.start);
    let e = f.line_col(label.span.end);
    json!({
        "file": f.name,
        "byte_start": label.span.start,
        "byte_end": label.span.end,
        "line": s.line,
        "column": s.col,
        "end_line": e.line,
        "end_column": e.col,
        "message": label.message,
    })
}

fn json_diag(map: &SourceMap, d: &Diagnostic) -> Json {
    json!({
        "code": d.code,
        "ngrok_code": d.ngrok_code.map(|n| format!("ERR_NGROK_{n}")),
        "severity": severity_word(d.severity),
        "message": d.message,
        "location": position(map, &d.primary),
        "labels": d.labels.iter().map(|l| position(map, l)).collect::<Vec<_>>(),
        "help": d.help,
    })
}

fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

fn github(map: &SourceMap, d: &Diagnostic) -> String {
    let kind = severity_word(d.severity);
    let Some(f) = map.get(d.primary.file) else {
        return format!(
            "::{kind} title={}::{}\n",
            d.code,
            gh_escape(&d.message, false)
        );
    };
    let s = f.line_col(d.primary.span.start);
    let e = f.line_col(d.primary.span.end);
    let mut msg = d.message.clone();
    if let Some(h) = &d.help {
        msg.push_str("\nhelp: ");
        msg.push_str(h);
    }
    format!(
        "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
        gh_escape(&f.name, true),
        s.line,
        s.col,
        e.line,
        e.col,
        gh_escape(d.code, true),
        gh_escape(&msg, false)
    )
}

fn sarif(map: &SourceMap, diags: &[Diagnostic]) -> Json {
    let mut rule_ids: Vec<&str> = diags.iter().map(|d| d.code).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let rules: Vec<Json> = rule_ids
        .iter()
        .map(|id| match codes::lookup(id) {
            Some(c) => json!({
                "id": c.code,
                "name": c.name,
                "shortDescription": { "text": c.summary },
                "defaultConfiguration": { "level": severity_word(c.severity) },
            }),
            None => json!({ "id": id }),
        })
        .collect();
    let results: Vec<Json> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            let location = map.get(d.primary.file).map(|f| {
                let s = f.line_col(d.primary.span.start);
                let e = f.line_col(d.primary.span.end);
                json!({
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.name.replace('\\', "/") },
                        "region": {
                            "startLine": s.line,
                            "startColumn": s.col,
                            "endLine": e.line,
                            "endColumn": e.col.max(if e.line == s.line { s.col } else { 1 }),
                            "byteOffset": d.primary.span.start,
                            "byteLength": d.primary.span.end - d.primary.span.start,
                        }
                    }
                })
            });
            json!({
                "ruleId": d.code,
                "level": severity_word(d.severity),
                "message": { "text": text },
                "locations": location.into_iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "wicket",
                "informationUri": "https://example.invalid/wicket",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }]
    })
}
