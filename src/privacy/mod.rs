//! Consent, and what the service keeps about a user under each answer.
//!
//! With consent to personalised ads, a user's caps, hides, load and sessions live in the hot
//! store under their (pseudonymous) id, each record expiring on its own rule (README,
//! "Privacy"). Without it, a decision uses only the request's country, city, language and OS,
//! reads and writes no per-user record, and the caps, hides and ad load travel in the signed
//! [`state`] that the answer carries and the next request sends back. What stays on the server
//! is what billing needs for the tokens issued: each token's dedupe flags, keyed by its decision
//! and gone when the token can no longer be billed, and ledger records without a reach key.
//!
//! # Threat model of the carried state
//!
//! The state is signed (HMAC under the token keys, bound to the user id) and expires 366 days
//! after it was issued (the longest cap window); one that is altered, expired or another user's counts as absent. The
//! client holds it, so the client decides which state it sends:
//! - **Dropping it** (or sending an older one) makes the user look new, or as they were then:
//!   caps, hides and the ad load start over from that state. That is the price of keeping no
//!   record; it only ever shows the user more ads, never bills anyone more.
//! - **Replaying one state on concurrent requests** lets each decide on the same history.
//! - It **cannot** forge history for another user, make an advertiser pay twice (renders dedupe
//!   per token, on the server), raise a price, or outlive the token window of any slot.
//! - It can read its own state (signed, not encrypted): the campaigns and advertisers the user
//!   was shown, as 8-byte ids and times. That is the user's own history, on their device.
//!
//! Every slot served counts in the state as rendered at the decision (the server never learns
//! which rendered without keeping a record), so caps and load are if anything stricter than
//! for a personalised user. Hides reach the state when the client sends it with the hide event
//! (`POST /v1/events` answers the updated state). A conversation started from a chat ad does
//! not suppress its campaign (`suppress_after`) for such a user: the conversion comes from the
//! messaging platform, not the client, and there is no per-user record to mark.

pub mod state;
pub mod subject;

use crate::capping::DAY_MS;
use crate::clock::Millis;
use crate::domain::slot::SlotContext;

/// How long a ledger record keeps the user's keyed hash (what reach counts): a year of reports
/// and a month to spare. After that the exporter clears it; the record stays for invoices.
pub const RECORD_USER_KEY_MS: Millis = 400 * DAY_MS;

/// The request's context as a decision may use it: without consent, only the contextual
/// signals (a campaign targeting age or interests then never matches).
pub fn contextual(context: &SlotContext) -> SlotContext {
    SlotContext {
        age: None,
        interests: Vec::new(),
        ..context.clone()
    }
}
