//! Bearer tokens on gRPC calls: the interceptor in front of every service
//! but health. The tokens themselves (file, reload, comparison) live in
//! `edge::tokens`, shared with the HTTP edge.

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::edge::TokenAuth;

impl Interceptor for TokenAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.is_required() {
            return Ok(request);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        match presented {
            Some(token) if self.accepts(token) => Ok(request),
            Some(_) => Err(Status::unauthenticated("the bearer token is not valid")),
            None => Err(Status::unauthenticated(
                "this server needs `authorization: Bearer <token>` (the CLI's --token-file)",
            )),
        }
    }
}
