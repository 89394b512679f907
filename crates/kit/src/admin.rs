//! Admin routes guarded by construction, for both services' admin APIs: a
//! service lists its admin routes in one table of [`AdminRoute`]s, and
//! [`guarded`] mounts exactly those, each behind a `route_layer` that
//! extracts the service's admin type `A` (its admin check) before the
//! handler or its extractors run. A route cannot be mounted unguarded
//! through the table, and the same table drives the tests that walk every
//! admin route.

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};

/// One admin route: its method, its path (axum's syntax, as in an OpenAPI
/// document) and its handler for that method.
pub struct AdminRoute<S> {
    pub method: Method,
    pub path: &'static str,
    pub handler: fn(MethodFilter) -> MethodRouter<S>,
}

/// Every route of `table`, each behind the guard that extracts `A` (and
/// answers its rejection when the check fails), the checked `A` handed to
/// the handler as a request extension. The guard sits on each method's
/// handler, not on the router: a method a path does not serve stays 405
/// (a CORS preflight included).
pub fn guarded<S, A>(table: &[AdminRoute<S>], state: &S) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    A: FromRequestParts<S> + Clone + Send + Sync + 'static,
    A::Rejection: IntoResponse,
{
    let mut router = Router::new();
    for route in table {
        match MethodFilter::try_from(route.method.clone()) {
            Ok(filter) => {
                let guard = middleware::from_fn_with_state(state.clone(), guard::<A>);
                router = router.route(route.path, (route.handler)(filter).route_layer(guard));
            }
            Err(e) => tracing::error!(path = route.path, error = %e, "admin route not mounted"),
        }
    }
    router
}

/// The guard: `A`'s extraction is the admin check; the checked admin goes
/// on to the handler.
async fn guard<A: Clone + Send + Sync + 'static>(admin: A, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(admin);
    next.run(request).await
}
