//! The body faults of the simulator: after an operation has answered, its reply is sent
//! malformed, truncated or padded to a huge size as the instance's [`Faults`](super::Faults)
//! say, and every answer gets its `X-Request-Id`.

use bytes::Bytes;
use hyper::Response;

use super::reply::{Reply, SimBody};

/// Builds the response: headers, then the body faults when `faults` is given.
pub(super) fn finish(
    reply: Reply,
    request_id: &str,
    faults: Option<&super::Faults>,
) -> Response<SimBody> {
    let mut builder = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("x-request-id", request_id);
    for (k, v) in &reply.headers {
        builder = builder.header(*k, v.as_str());
    }
    let mut body = SimBody::Full(Some(reply.body.clone()));
    if let Some(f) = faults {
        if f.malformed_body {
            body = SimBody::Full(Some(Bytes::from_static(
                b"{\"id\": \"3f1c\", \"status\": <html>502 Bad Gateway</html>",
            )));
        } else if f.truncated_body && reply.body.len() > 1 {
            let full = reply.body.len();
            builder = builder.header("content-length", full.to_string());
            body = SimBody::Truncated(Some(reply.body.slice(..full / 2)));
        } else if let Some(n) = f.huge_body_bytes {
            if reply.body.first() == Some(&b'{') && n > reply.body.len() {
                let head = Bytes::from_static(b"{\"padding\":\"");
                let rest = reply.body.slice(1..);
                let tail = if rest.as_ref() == b"}" {
                    Bytes::from_static(b"\"}")
                } else {
                    let mut t = b"\",".to_vec();
                    t.extend_from_slice(&rest);
                    Bytes::from(t)
                };
                let remaining = n.saturating_sub(head.len() + tail.len()).max(1);
                body = SimBody::Padded {
                    head: Some(head),
                    remaining,
                    tail: Some(tail),
                };
            }
        }
    }
    builder.body(body).unwrap_or_else(|_| {
        // Only an invalid header value can fail here; none of ours is.
        let mut r = Response::new(SimBody::Full(Some(Bytes::from_static(b"{}"))));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
