//! The simulator's answers: [`Reply`] (status, JSON body, headers), the DCS and API gateway
//! error bodies, the refusals of the simulated state as DCS errors, and [`SimBody`], the
//! response body that the body faults can cut short or pad.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde::Serialize;
use serde_json::json;

use super::offline::OfflineRefusal;
use super::state::Refusal;
use crate::dcs::model::{Analysis, ErrorBody};

/// Padding for the `huge_body_bytes` fault.
pub(super) static PAD: [u8; 65536] = [b'x'; 65536];

/// Response bodies: whole, deliberately cut short, or padded and streamed.
pub enum SimBody {
    Full(Option<Bytes>),
    /// Sent with a Content-Length larger than these bytes.
    Truncated(Option<Bytes>),
    Padded {
        head: Option<Bytes>,
        remaining: usize,
        tail: Option<Bytes>,
    },
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            SimBody::Full(b) | SimBody::Truncated(b) => b.take(),
            SimBody::Padded {
                head,
                remaining,
                tail,
            } => {
                if let Some(h) = head.take() {
                    Some(h)
                } else if *remaining > 0 {
                    let n = (*remaining).min(PAD.len());
                    *remaining -= n;
                    Some(Bytes::from_static(&PAD[..n]))
                } else {
                    tail.take()
                }
            }
        };
        Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(b) | SimBody::Truncated(b) => b.is_none(),
            SimBody::Padded {
                head,
                remaining,
                tail,
            } => head.is_none() && *remaining == 0 && tail.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SimBody::Truncated(_) => SizeHint::default(),
            SimBody::Padded {
                head,
                remaining,
                tail,
            } => SizeHint::with_exact(
                head.as_ref().map_or(0, |b| b.len() as u64)
                    + *remaining as u64
                    + tail.as_ref().map_or(0, |b| b.len() as u64),
            ),
        }
    }
}

/// An answer before body faults and headers are applied.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Bytes,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(super) fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Reply {
            status,
            body: Bytes::from(body),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// A DCS error: `{"error_code","error_msg","error_ext_msg":null}`.
    pub(super) fn dcs(status: u16, code: &str, msg: &str) -> Reply {
        Reply::json(
            status,
            &json!({"error_code": code, "error_msg": msg, "error_ext_msg": null}),
        )
    }

    /// An API gateway error: `{"error_code","error_msg","request_id"}`.
    pub(super) fn apig(status: u16, code: &str, msg: &str, request_id: &str) -> Reply {
        Reply::json(
            status,
            &ErrorBody {
                error_code: Some(code.into()),
                error_msg: Some(msg.into()),
                error_ext_msg: None,
                request_id: Some(request_id.into()),
            },
        )
    }
}

pub(super) fn invalid(param: &str) -> Reply {
    Reply::dcs(400, "DCS.4800", &format!("Invalid {param} in the request."))
}

pub(super) fn refusal(r: Refusal, a: Analysis) -> Reply {
    match r {
        Refusal::HotkeyUnsupported => {
            Reply::dcs(400, "DCS.4922", "Does not support hotkey analyze.")
        }
        Refusal::AlreadyRunning => Reply::dcs(
            400,
            "DCS.4918",
            &format!("Instance {} analyze is running.", a.as_str()),
        ),
        Refusal::InstanceNotRunning => {
            Reply::dcs(400, "DCS.4049", "The instance status is not running.")
        }
        Refusal::TaskNotFound => match a {
            Analysis::Hotkey => {
                Reply::dcs(400, "DCS.4941", "The hotkey analysis task does not exist.")
            }
            Analysis::Bigkey => {
                Reply::dcs(400, "DCS.4942", "The bigkey analysis task does not exist.")
            }
            Analysis::Keyfamily => Reply::dcs(
                400,
                "DCS.4232",
                "The offline key analysis task does not exist.",
            ),
            // DCS has no hot slot analysis (the exporter reads them from Redis Cluster itself).
            Analysis::Hotslot => Reply::dcs(400, "DCS.4232", "The analysis task does not exist."),
        },
        Refusal::TaskActive => Reply::dcs(
            400,
            "DCS.4957",
            "The operation is not allowed in the current task status.",
        ),
        Refusal::Invalid(p) => invalid(p),
    }
}

pub(super) fn offline_refusal(r: OfflineRefusal) -> Reply {
    match r {
        OfflineRefusal::Running => {
            Reply::dcs(400, "DCS.4231", "The offline key analysis is running.")
        }
        OfflineRefusal::NotFound => refusal(Refusal::TaskNotFound, Analysis::Keyfamily),
        OfflineRefusal::Other(r) => refusal(r, Analysis::Keyfamily),
    }
}
