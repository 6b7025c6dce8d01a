//! The digest's HTML part: the same content as the text part, as tables, with the charts as
//! inline images (`cid:`). Built with `escape` around every piece of text: server errors, model
//! output and even backend names are untrusted, so none of it can add markup or script.

use super::changes::Changes;
use super::charts::{Chart, colour};
use super::compose::{TOP_SIGNATURES, backend_lines, signature_query, subject};
use crate::report::model::{BackendReport, Report};
use crate::text::{bounded, printable};
use std::fmt::Write;

/// `s` safe as HTML text or inside a double- or single-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in printable(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#222;max-width:760px}\
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;font-size:13px}\
th{background:#f3f3f3}code{font-size:12px;background:#f6f6f6;word-break:break-all}\
.new{color:#b00}.resolved{color:#070}.regression{color:#b00;font-weight:bold}h2{font-size:17px;margin:18px 0 4px}\
.muted{color:#777}";

pub fn render(r: &Report, changes: &Changes, charts: &[Chart]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&subject(r))
    );
    let _ = writeln!(
        h,
        "<h1 style=\"font-size:19px\">{}</h1>\n<p class=\"muted\">{} → {} ({:.1} h)</p>",
        escape(&subject(r)),
        escape(&r.window.from_utc),
        escape(&r.window.to_utc),
        r.window.hours
    );
    if r.backends.is_empty() {
        let _ = writeln!(
            h,
            "<p>No requests and no memory samples in this window: nothing ran. Is the daemon running \
             (<code>soakd run</code>), with backends in its config and jobs in its schedules (<code>soakd check</code>)?</p>"
        );
        changes_section(&mut h, changes);
        h.push_str("</body></html>\n");
        return h;
    }
    comparison(&mut h, r);
    changes_section(&mut h, changes);
    for c in charts {
        let _ = writeln!(
            h,
            "<p><img src=\"cid:{}\" alt=\"{}\" width=\"720\" height=\"260\" style=\"max-width:100%;height:auto\"></p>",
            escape(&c.cid),
            escape(&c.title)
        );
    }
    for (i, b) in r.backends.iter().enumerate() {
        backend(&mut h, b, i, r);
    }
    findings(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

fn comparison(h: &mut String, r: &Report) {
    h.push_str("<h2>Comparison</h2>\n<table><tr><th></th>");
    for (i, b) in r.backends.iter().enumerate() {
        let c = colour(i);
        let _ = write!(h, "<th style=\"color:rgb({},{},{})\">{}</th>", c.0, c.1, c.2, escape(&b.name));
    }
    h.push_str("<th>winner</th></tr>\n");
    for row in &r.comparison {
        let _ = write!(h, "<tr><th>{}</th>", escape(row.metric));
        for v in &row.values {
            let _ = write!(h, "<td>{}</td>", escape(v));
        }
        let _ = writeln!(
            h,
            "<td title=\"{}\">{}</td></tr>",
            escape(&row.basis),
            escape(row.winner.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</table>\n");
}

fn changes_section(h: &mut String, c: &Changes) {
    let since = c.previous_at.map_or("the start (this is the first digest)".to_string(), |at| {
        format!("the previous digest ({})", crate::report::window::utc(at))
    });
    let _ = writeln!(h, "<h2>Since {}</h2>", escape(&since));
    if c.new.is_empty() && c.resolved.is_empty() && c.regressions.is_empty() {
        let _ = writeln!(h, "<p>Nothing changed ({} finding(s) ongoing).</p>", c.ongoing);
        return;
    }
    h.push_str("<ul>\n");
    for f in &c.new {
        let _ = writeln!(h, "<li><span class=\"new\">new</span> {}</li>", escape(&f.summary));
    }
    for f in &c.resolved {
        let _ = writeln!(
            h,
            "<li><span class=\"resolved\">resolved</span> {}</li>",
            escape(f.summary.trim_start_matches("resolved: "))
        );
    }
    for s in &c.regressions {
        let _ = writeln!(h, "<li><span class=\"regression\">regression</span> {}</li>", escape(s));
    }
    let _ = writeln!(h, "</ul>\n<p class=\"muted\">{} ongoing</p>", c.ongoing);
}

fn backend(h: &mut String, b: &BackendReport, i: usize, r: &Report) {
    let c = colour(i);
    let _ = writeln!(
        h,
        "<h2 style=\"color:rgb({},{},{})\">{}</h2>\n<p>{} requests, {:.1} % ok</p>\n<table>",
        c.0,
        c.1,
        c.2,
        escape(&b.name),
        b.requests,
        b.success_rate * 100.0
    );
    for (label, text) in backend_lines(b) {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(label), escape(&text));
    }
    h.push_str("</table>\n");
    let top = &b.signatures[..b.signatures.len().min(TOP_SIGNATURES)];
    if top.is_empty() {
        return;
    }
    h.push_str(
        "<p>Top crash signatures:</p>\n<table><tr><th>count</th><th>signature</th><th>example and query</th></tr>\n",
    );
    for s in top {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{} <span class=\"muted\">[{}]</span></td><td>{}<br><code>{}</code></td></tr>",
            s.count,
            escape(&s.signature),
            escape(&s.outcome),
            escape(&bounded(&s.example, 240)),
            escape(&signature_query(&b.name, &s.signature, r))
        );
    }
    h.push_str("</table>\n");
}

fn findings(h: &mut String, r: &Report) {
    h.push_str("<h2>Findings</h2>\n");
    if r.findings.is_empty() {
        h.push_str("<p>None.</p>\n");
        return;
    }
    h.push_str("<table><tr><th>status</th><th>finding, and the query behind it</th></tr>\n");
    for f in &r.findings {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}{}</td></tr>",
            escape(&f.status),
            escape(&f.summary),
            f.evidence.as_deref().map_or(String::new(), |q| format!("<br><code>{}</code>", escape(q)))
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        let s = escape("<script>alert('x')</script> & \"q\"\u{1b}[31m");
        assert_eq!(s, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;\u{FFFD}[31m");
    }
}
