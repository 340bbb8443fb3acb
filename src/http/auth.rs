//! Bearer-token roles. Operator and client tokens come from configuration and are compared in
//! constant time; advertiser keys are looked up by their SHA-256 in the catalog snapshot (the
//! plaintext is never stored). No token or an unknown one is 401; a known token of the wrong
//! role is 403.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::domain::advertiser::{hash_api_key, Advertiser};
use crate::metrics::RateLimitScope;

pub enum Role {
    Operator,
    /// Which configured client token (its position), the key of its rate limit.
    Client(usize),
    Advertiser(Arc<Advertiser>),
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn state_of(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("no app state".into()))
}

pub fn role_of(req: &HttpRequest) -> Result<Role, ApiError> {
    let state = state_of(req)?;
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    if equal(token, &state.admin_token) {
        return Ok(Role::Operator);
    }
    // Check every client token (no early exit) so timing does not reveal which one matched.
    let client = state
        .client_tokens
        .iter()
        .enumerate()
        .fold(
            None,
            |found, (i, t)| if equal(token, t) { Some(i) } else { found },
        );
    if let Some(index) = client {
        return Ok(Role::Client(index));
    }
    state
        .catalog
        .snapshot()
        .advertiser_by_key_hash(&hash_api_key(token))
        .cloned()
        .map(Role::Advertiser)
        .ok_or(ApiError::Unauthorized)
}

/// The operator (admin token).
pub struct Operator;

/// The messaging app (a client token).
pub struct Client;

/// An advertiser, by its API key.
pub struct AdvertiserAuth(pub Arc<Advertiser>);

/// Operator or the advertiser owning the thing (reports).
pub enum Reader {
    Operator,
    Advertiser(Arc<Advertiser>),
}

macro_rules! extractor {
    ($ty:ty, |$req:ident, $role:ident| $body:expr) => {
        impl FromRequest for $ty {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let $req = req;
                ready(role_of(req).and_then(|$role| $body))
            }
        }
    };
}

extractor!(Operator, |_req, role| match role {
    Role::Operator => Ok(Operator),
    _ => Err(ApiError::Forbidden),
});
extractor!(Client, |req, role| match role {
    Role::Client(index) => state_of(req)?
        .limit(RateLimitScope::Client, &index.to_string())
        .map(|()| Client),
    _ => Err(ApiError::Forbidden),
});
extractor!(AdvertiserAuth, |req, role| match role {
    Role::Advertiser(a) => state_of(req)?
        .limit(RateLimitScope::Advertiser, a.id.as_str())
        .map(|()| AdvertiserAuth(a)),
    _ => Err(ApiError::Forbidden),
});
extractor!(Reader, |_req, role| match role {
    Role::Operator => Ok(Reader::Operator),
    Role::Advertiser(a) => Ok(Reader::Advertiser(a)),
    Role::Client(_) => Err(ApiError::Forbidden),
});
