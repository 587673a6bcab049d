//! [`Admission`]: what every request passes after routing and before the service's own handler, as one
//! tower service with its own future: HTTP metrics (which see every answer, refusals included), the
//! in-flight limit, the declared body size, the route table's [`Guard`] (tokens, rate limits, scopes) and
//! the request timeout. None of it needs to wait, so none of it is an `async fn`: 10,000 requests in
//! flight each hold this future while they wait for their handler, and a middleware per check would each
//! box a future holding its own copy of the request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tokio::sync::OwnedSemaphorePermit;
use tower::{Layer, Service};

use crate::limits::{self, Limits};
use crate::observe::HttpMetrics;
use crate::Guard;

/// The layer of [`Admit`], shared by every route.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<(Guard, Limits)>,
}

impl Admission {
    pub fn new(guard: Guard, limits: Limits) -> Admission {
        Admission { inner: Arc::new((guard, limits)) }
    }
}

impl<S> Layer<S> for Admission {
    type Service = Admit<S>;

    fn layer(&self, service: S) -> Admit<S> {
        Admit { admission: self.clone(), service }
    }
}

/// A service behind [`Admission`].
#[derive(Clone)]
pub struct Admit<S> {
    admission: Admission,
    service: S,
}

impl<S> Service<Request> for Admit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.service.poll_ready(context)
    }

    fn call(&mut self, mut request: Request) -> Admitted<S::Future> {
        let metrics = HttpMetrics::start(&request);
        let (guard, limits) = &*self.admission.inner;
        let Some(permit) = limits.permit() else { return Admitted::refused(limits::overloaded(), metrics) };
        if let Some(refusal) = limits.refuse_declared_length(&request).or_else(|| guard.refuse(&mut request)) {
            return Admitted::refused(refusal, metrics);
        }
        // The service that was polled ready takes the request; a clone stays for the next one.
        let ready = self.service.clone();
        let mut service = std::mem::replace(&mut self.service, ready);
        Admitted {
            state: State::Running {
                answer: tokio::time::timeout(limits.timeout, service.call(request)),
                _permit: permit,
            },
            metrics: Some(metrics),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of an admitted request, or its refusal; its metrics are recorded when it is ready.
    pub struct Admitted<F> {
        #[pin]
        state: State<F>,
        metrics: Option<HttpMetrics>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Refused { refusal: Option<Response> },
        Running {
            #[pin]
            answer: tokio::time::Timeout<F>,
            // Held until the answer is ready: the request counts as in flight until then.
            _permit: OwnedSemaphorePermit,
        },
    }
}

impl<F> Admitted<F> {
    fn refused(refusal: Response, metrics: HttpMetrics) -> Admitted<F> {
        Admitted { state: State::Refused { refusal: Some(refusal) }, metrics: Some(metrics) }
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Admitted<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.state.project() {
            StateProjection::Refused { refusal } => {
                refusal.take().expect("an admission is not polled after it is ready")
            }
            StateProjection::Running { answer, .. } => match ready!(answer.poll(context)) {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_elapsed) => limits::timed_out(),
            },
        };
        if let Some(metrics) = this.metrics.take() {
            metrics.record(&response);
        }
        Poll::Ready(Ok(response))
    }
}
