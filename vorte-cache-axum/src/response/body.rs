//! Buffering a response body up to the route's limit (`docs/web.md#rc6-body-limit`); a body over
//! it goes on to the client as it comes, what was read first included.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The error type of the bodies passed on.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body read as far as the limit allowed.
pub(crate) enum Collected<B> {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit, or failed: what was read, then the rest (the body, or its error).
    Partial(Prefixed<B>),
}

/// Reads `body` whole if it holds at most `limit` bytes.
pub(crate) async fn collect_limited<B>(body: B, limit: usize) -> Collected<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut read = VecDeque::new();
    // A body that says it is larger than the limit is not read at all.
    if body.size_hint().lower() > limit as u64 {
        return Collected::Partial(Prefixed::new(read, body, None));
    }
    let mut len = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                // Trailers are dropped: a stored response has none.
                if let Ok(data) = frame.into_data() {
                    len = len.saturating_add(data.len());
                    read.push_back(data);
                    if len > limit {
                        return Collected::Partial(Prefixed::new(read, body, None));
                    }
                }
            }
            Some(Err(e)) => return Collected::Partial(Prefixed::new(read, body, Some(e.into()))),
        }
    }
    let mut whole = BytesMut::with_capacity(len);
    for chunk in read {
        whole.extend_from_slice(&chunk);
    }
    Collected::Whole(whole.freeze())
}

/// A body that yields what was read of another body first, then the rest of it (or the error
/// that stopped the reading).
pub(crate) struct Prefixed<B> {
    read: VecDeque<Bytes>,
    rest: Option<Pin<Box<B>>>,
    error: Option<BoxError>,
}

impl<B> Prefixed<B> {
    fn new(read: VecDeque<Bytes>, rest: Pin<Box<B>>, error: Option<BoxError>) -> Self {
        // After an error the body is not polled again.
        let rest = if error.is_some() { None } else { Some(rest) };
        Prefixed { read, rest, error }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(chunk) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match this.rest.as_mut() {
            Some(rest) => rest.as_mut().poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self.read.iter().map(|c| c.len() as u64).sum();
        let mut hint = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |rest| rest.size_hint());
        // The upper bound first: `set_lower` refuses a lower bound above the upper one.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint.set_lower(hint.lower().saturating_add(read));
        hint
    }
}
