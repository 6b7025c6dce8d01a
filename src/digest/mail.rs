//! A digest (or an alert) as an RFC 5322 message (lettre's builder): `multipart/alternative`
//! with the plain text first and then `multipart/related` holding the HTML and its charts as
//! inline PNG parts (Content-ID), which is what mail clients show as images in the HTML.

use super::Digest;
use crate::config::mail::SmtpConfig;
use crate::secrets::scrub;
use crate::store::outbox::NewMail;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use std::time::SystemTime;

/// Who a mail is from and to: the `[smtp]` table's, or local placeholders for a digest that is
/// only printed or written to a file.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

impl Addresses {
    pub fn of(smtp: Option<&SmtpConfig>) -> Addresses {
        match smtp {
            Some(s) => Addresses { from: s.from.clone(), to: s.to.clone() },
            None => Addresses {
                from: "soakd <soakd@localhost>".parse().expect("a valid address"),
                to: vec!["soakd-reader@localhost".parse().expect("a valid address")],
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the mail: {0}")]
pub struct BuildError(#[from] lettre::error::Error);

/// A Message-ID unique to this mail: `<kind.time.random.key@soakd>`.
pub fn message_id(kind: &str, now_ms: i64, key: &str) -> String {
    let key: String = key.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(60).collect();
    format!("<{kind}.{now_ms}.{:016x}.{key}@soakd>", rand::random::<u64>())
}

pub fn digest_message(d: &Digest, to: &Addresses, message_id: &str, date: SystemTime) -> Result<Message, BuildError> {
    let text = scrub(&d.text).into_owned();
    let html = SinglePart::html(scrub(&d.html).into_owned());
    let rich = if d.charts.is_empty() {
        MultiPart::alternative().singlepart(SinglePart::plain(text)).singlepart(html)
    } else {
        let mut related = MultiPart::related().singlepart(html);
        for c in &d.charts {
            let part = Attachment::new_inline(c.cid.clone())
                .body(c.png.clone(), ContentType::parse("image/png").expect("a valid type"));
            related = related.singlepart(part);
        }
        MultiPart::alternative().singlepart(SinglePart::plain(text)).multipart(related)
    };
    Ok(builder(to, &d.subject, message_id, date).multipart(rich)?)
}

/// A short plain-text mail (an immediate alert).
pub fn plain_message(
    to: &Addresses,
    subject: &str,
    body: &str,
    message_id: &str,
    date: SystemTime,
) -> Result<Message, BuildError> {
    Ok(builder(to, subject, message_id, date).singlepart(SinglePart::plain(scrub(body).into_owned()))?)
}

fn builder(to: &Addresses, subject: &str, message_id: &str, date: SystemTime) -> lettre::message::MessageBuilder {
    let mut b = Message::builder()
        .from(to.from.clone())
        .subject(crate::text::bounded(&crate::text::printable(&scrub(subject)), 200))
        .message_id(Some(message_id.to_string()))
        .date(date)
        .user_agent(format!("soakd {}", env!("CARGO_PKG_VERSION")));
    for m in &to.to {
        b = b.to(m.clone());
    }
    b
}

/// The outbox row for a built message.
pub fn outbox_row(
    kind: &'static str,
    window: Option<(i64, i64)>,
    subject: &str,
    message_id: &str,
    m: &Message,
) -> NewMail {
    let env = m.envelope();
    NewMail {
        kind,
        window,
        subject: subject.to_string(),
        envelope_from: env.from().map(|a| a.to_string()).unwrap_or_default(),
        envelope_to: env.to().iter().map(|a| a.to_string()).collect(),
        message_id: message_id.to_string(),
        message: m.formatted(),
    }
}
