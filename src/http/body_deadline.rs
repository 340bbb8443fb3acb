//! The deadline on request bodies (API.md 1.1, `http.body_timeout_ms`). actix's
//! `client_request_timeout` bounds only the head; without this a body that stops arriving holds
//! its connection, its worker's buffers and whatever the handler has read of it for ever. Every
//! body must arrive whole within the deadline, counted from its head. One that does not is cut
//! off: the handler's read fails, the request is answered 408 `request_timeout` whatever the
//! handler made of that failure, and the connection is closed, so what was buffered is freed
//! with it.
//!
//! A body left unread by an early answer (a 408, or a 401, 413, 429…) is not drained either:
//! actix reads a dropped chunked body to its end with no deadline at all, so a client that
//! stalls one would hold its connection. Keeping the unread rest alive until the answer is
//! written makes actix close the connection instead.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::error::ApiError;

/// How long a request body may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub timeout: Duration,
}

/// One request's body, shared by the stream the handler reads and the middleware that answers.
#[derive(Default)]
pub struct Body {
    /// `None` once the body has ended, and for a request without one.
    rest: RefCell<Option<Payload>>,
    cut: Cell<bool>,
}

impl BodyDeadline {
    /// Puts the deadline on `req`'s body (a request without one is left alone).
    pub fn arm(self, req: &mut ServiceRequest) -> Rc<Body> {
        let body = Rc::new(Body::default());
        let payload = req.take_payload();
        if matches!(payload, Payload::None) {
            return body;
        }
        *body.rest.borrow_mut() = Some(payload);
        let limited: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Limited {
            body: body.clone(),
            deadline: Instant::now() + self.timeout,
            sleep: None,
        });
        req.set_payload(Payload::from(limited));
        body
    }

    /// The handler's answer, or the 408 when the deadline cut its body short.
    pub fn answer(
        self,
        body: Rc<Body>,
        answered: Result<ServiceResponse, actix_web::Error>,
    ) -> Result<ServiceResponse, actix_web::Error> {
        let unread = body.rest.borrow_mut().take();
        let res = if body.cut.get() {
            let mut timeout =
                ApiError::RequestTimeout(self.timeout.as_millis() as u64).error_response();
            timeout
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            match answered {
                Ok(res) => res.into_response(timeout),
                Err(err) => {
                    tracing::debug!(error = %err, "request body deadline passed");
                    return Err(actix_web::error::InternalError::from_response(
                        "request body deadline passed",
                        timeout,
                    )
                    .into());
                }
            }
        } else {
            answered?
        };
        Ok(match unread {
            // Held by the answer's body until it is written, when actix decides between keeping
            // the connection and closing it.
            Some(rest) => res
                .map_body(|_, body| HoldingUnread { body, _rest: rest })
                .map_into_boxed_body(),
            None => res,
        })
    }
}

/// An answer's body that keeps the request's unread rest alive while it is written.
struct HoldingUnread {
    body: BoxBody,
    _rest: Payload,
}

impl MessageBody for HoldingUnread {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// A body stream that ends in an error once its deadline has passed.
struct Limited {
    body: Rc<Body>,
    deadline: Instant,
    /// Armed only when the body first makes the reader wait: a body that arrives with its head
    /// (most JSON) never registers a timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Limited {
    fn cut_off(&mut self) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.body.cut.set(true);
        self.sleep = None;
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request body deadline passed",
        )))))
    }
}

impl Stream for Limited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.body.cut.get() {
            return Poll::Ready(None);
        }
        let mut rest = this.body.rest.borrow_mut();
        let Some(payload) = rest.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(payload).poll_next(cx) {
            Poll::Ready(None) => {
                *rest = None;
                this.sleep = None;
                Poll::Ready(None)
            }
            // A trickle that never makes the reader wait is cut off too.
            Poll::Ready(Some(Ok(_))) if Instant::now() >= this.deadline => {
                drop(rest);
                this.cut_off()
            }
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => {
                drop(rest);
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => this.cut_off(),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
