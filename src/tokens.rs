//! Slot tokens: `v1.<kid>.<payload>.<mac>`, base64url, HMAC-SHA256 over everything before the
//! last dot. The payload binds the decision, user, campaign, creative, advertiser, price, expiry
//! and the decision's coarse context (what reports break down by), so an event can be billed and
//! reported from the token alone and nothing in it can be altered. Tokens signed before the
//! context was carried (seven fields) still verify, with the context unknown. The key id lets
//! keys rotate: a verifier keeps old keys until their last tokens expire. A slot served without
//! consent to personalisation carries an eleventh field, `n`; every other token is as before.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::domain::audience::Coarse;
use crate::domain::ids::{AdvertiserId, CampaignId, CreativeId};
use crate::domain::{Micros, UserId};

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";

/// What a token proves about one served slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub decision_id: String,
    pub user: UserId,
    pub campaign: CampaignId,
    pub creative: CreativeId,
    pub advertiser: AdvertiserId,
    pub price_micros: Micros,
    pub expires_at_ms: Millis,
    pub coarse: Coarse,
    /// Served with consent to personalisation: its events may keep per-user state.
    pub personalized: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, unknown key id, bad signature or altered payload.
    Invalid,
}

#[derive(Clone)]
struct SigningKey {
    kid: String,
    mac: HmacSha256,
}

/// Signs with the newest key, verifies with any known key.
#[derive(Clone)]
pub struct TokenKeys {
    current: SigningKey,
    previous: Vec<SigningKey>,
}

impl TokenKeys {
    pub fn new(secret: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            current: SigningKey::new(secret),
            previous: previous.iter().map(|s| SigningKey::new(s)).collect(),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        use std::fmt::Write;
        // One buffer for the payload and one for the token: three tokens per decision.
        let mut payload = String::with_capacity(192);
        let _ = write!(
            payload,
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            claims.decision_id,
            claims.user.as_str(),
            claims.campaign.as_str(),
            claims.creative.as_str(),
            claims.advertiser.as_str(),
            claims.price_micros,
            claims.expires_at_ms,
            claims.coarse.country,
            claims.coarse.os,
            claims.coarse.age_band,
        );
        if !claims.personalized {
            payload.push_str("\nn");
        }
        let mut token =
            String::with_capacity(16 + self.current.kid.len() + payload.len() * 4 / 3 + 48);
        token.push_str(VERSION);
        token.push('.');
        token.push_str(&self.current.kid);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let mut mac = self.current.mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > 1024 {
            return Err(TokenError::Invalid);
        }
        let (signed, mac_b64) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let mut parts = signed.splitn(3, '.');
        let (Some(VERSION), Some(kid), Some(payload_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(mac_b64)
            .map_err(|_| TokenError::Invalid)?;
        let mut mac = key.mac.clone();
        mac.update(signed.as_bytes());
        // Constant-time comparison: no timing oracle for forging a tag byte by byte.
        mac.verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Invalid)?;
        let payload = std::str::from_utf8(&payload).map_err(|_| TokenError::Invalid)?;
        parse_claims(payload).ok_or(TokenError::Invalid)
    }
}

impl TokenKeys {
    /// The tag of a user's carried state (`crate::privacy::state`), with the current key. The
    /// `state` prefix keeps it apart from every token's signed text (which starts `v1.`).
    pub fn state_tag(&self, user: &[u8], body: &[u8]) -> [u8; 32] {
        state_mac(&self.current, user, body)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `tag` (a prefix of at least 16 bytes) is the state's tag under any known key.
    pub fn verify_state_tag(&self, user: &[u8], body: &[u8], tag: &[u8]) -> bool {
        tag.len() >= 16
            && std::iter::once(&self.current)
                .chain(&self.previous)
                .any(|key| {
                    state_mac(key, user, body)
                        .verify_truncated_left(tag)
                        .is_ok()
                })
    }
}

fn state_mac(key: &SigningKey, user: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = key.mac.clone();
    mac.update(b"state\n");
    mac.update(user);
    mac.update(b"\n");
    mac.update(body);
    mac
}

impl SigningKey {
    fn new(secret: &[u8]) -> Self {
        let kid = hex::encode(&Sha256::digest(secret)[..4]);
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        Self { kid, mac }
    }
}

fn parse_claims(payload: &str) -> Option<Claims> {
    let mut fields = payload.split('\n');
    let claims = Claims {
        decision_id: fields.next()?.to_owned(),
        user: UserId::parse(fields.next()?).ok()?,
        campaign: CampaignId::parse(fields.next()?)?,
        creative: CreativeId::parse(fields.next()?)?,
        advertiser: AdvertiserId::parse(fields.next()?)?,
        price_micros: fields.next()?.parse().ok()?,
        expires_at_ms: fields.next()?.parse().ok()?,
        coarse: Coarse::default(),
        personalized: true,
    };
    let mut claims = claims;
    if let Some(country) = fields.next() {
        claims.coarse = Coarse {
            country: country.to_owned(),
            os: fields.next()?.to_owned(),
            age_band: fields.next()?.to_owned(),
        };
        if let Some(flag) = fields.next() {
            (flag == "n").then_some(())?;
            claims.personalized = false;
        }
    }
    (fields.next().is_none() && claims.decision_id.len() == 32).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::new_decision_id;

    fn claims() -> Claims {
        Claims {
            decision_id: new_decision_id(),
            user: UserId::parse("user-1").unwrap(),
            campaign: CampaignId::generate(),
            creative: CreativeId::generate(),
            advertiser: AdvertiserId::generate(),
            price_micros: 2500,
            expires_at_ms: 1_800_000_000_000,
            coarse: Coarse {
                country: "IT".into(),
                os: "android".into(),
                age_band: "25-34".into(),
            },
            personalized: true,
        }
    }

    #[test]
    fn tokens_without_the_context_still_verify() {
        let keys = TokenKeys::new(b"k1-0123456789abcdef0123456789abcdef", &[]);
        let mut c = claims();
        c.coarse = Coarse::default();
        let signed = keys.sign(&c);
        // The same claims as the seven-field payload of earlier builds.
        let parts: Vec<&str> = signed.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let legacy = payload.trim_end_matches('\n').to_owned();
        assert_eq!(legacy.split('\n').count(), 7);
        let head = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(&legacy)
        );
        let mut mac = HmacSha256::new_from_slice(b"k1-0123456789abcdef0123456789abcdef").unwrap();
        mac.update(head.as_bytes());
        let token = format!(
            "{head}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(keys.verify(&token), Ok(c));
    }

    #[test]
    fn round_trips() {
        let keys = TokenKeys::new(b"k1-0123456789abcdef0123456789abcdef", &[]);
        let c = claims();
        assert_eq!(keys.verify(&keys.sign(&c)), Ok(c));
    }

    #[test]
    fn forged_or_altered_tokens_are_invalid() {
        let keys = TokenKeys::new(b"k1-0123456789abcdef0123456789abcdef", &[]);
        let other = TokenKeys::new(b"k2-0123456789abcdef0123456789abcdef", &[]);
        let token = keys.sign(&claims());
        assert_eq!(
            keys.verify(&other.sign(&claims())),
            Err(TokenError::Invalid)
        );
        // Change the price inside the payload, keep the old tag.
        let parts: Vec<&str> = token.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let altered = URL_SAFE_NO_PAD.encode(payload.replace("\n2500\n", "\n1\n"));
        let forged = format!("{}.{}.{}.{}", parts[0], parts[1], altered, parts[3]);
        assert_eq!(keys.verify(&forged), Err(TokenError::Invalid));
        for garbage in [
            "",
            ".",
            "v1...",
            "v1.x.y.z",
            &token[..token.len() - 2],
            "v2.a.b.c",
        ] {
            assert_eq!(
                keys.verify(garbage),
                Err(TokenError::Invalid),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn previous_keys_still_verify() {
        let old = TokenKeys::new(b"old-0123456789abcdef0123456789abcdef", &[]);
        let rotated = TokenKeys::new(
            b"new-0123456789abcdef0123456789abcdef",
            &[b"old-0123456789abcdef0123456789abcdef"],
        );
        let c = claims();
        assert_eq!(rotated.verify(&old.sign(&c)), Ok(c));
    }
}
