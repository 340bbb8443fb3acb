//! Property-based fuzzing of what attackers control byte for byte: slot tokens, the slots and
//! events JSON bodies, and uploaded media. Nothing may panic; nothing altered may verify.
//! Bounded (a few thousand cases each) so it runs in the test command; failing inputs are
//! persisted by proptest under `tests/fuzz.proptest-regressions` and replayed first.

use proptest::prelude::*;
use statusads::domain::event::EventBatch;
use statusads::domain::ids::{new_decision_id, AdvertiserId, CampaignId, CreativeId};
use statusads::domain::slot::SlotRequestBody;
use statusads::domain::UserId;
use statusads::media;
use statusads::tokens::{Claims, TokenKeys};

fn keys() -> TokenKeys {
    TokenKeys::new(b"fuzz-signing-key-0123456789abcdef0123", &[])
}

fn valid_token() -> String {
    keys().sign(&Claims {
        decision_id: new_decision_id(),
        user: UserId::parse("fuzz-user").unwrap(),
        campaign: CampaignId::generate(),
        creative: CreativeId::generate(),
        advertiser: AdvertiserId::generate(),
        price_micros: 2500,
        expires_at_ms: 1_800_000_000_000,
        coarse: Default::default(),
        personalized: true,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_tokens_never_verify_or_panic(token in ".{0,300}") {
        prop_assert!(keys().verify(&token).is_err());
    }

    #[test]
    fn altered_tokens_never_verify(position in 0usize..400, byte in any::<u8>()) {
        let token = valid_token();
        let mut bytes = token.clone().into_bytes();
        let position = position % bytes.len();
        prop_assume!(bytes[position] != byte);
        bytes[position] = byte;
        if let Ok(altered) = String::from_utf8(bytes) {
            prop_assert!(keys().verify(&altered).is_err());
        }
    }

    #[test]
    fn slot_and_event_bodies_never_panic(body in ".{0,400}") {
        if let Ok(request) = serde_json::from_str::<SlotRequestBody>(&body) {
            let _ = request.parse();
        }
        let _ = serde_json::from_str::<EventBatch>(&body);
    }

    #[test]
    fn structured_slot_bodies_validate_without_panicking(
        user in ".{0,200}", statuses in any::<u32>(), session in proptest::option::of(".{0,200}"),
        country in proptest::option::of(".{0,120}"), age in proptest::option::of(any::<u8>()),
        interests in proptest::collection::vec(".{0,120}", 0..120),
    ) {
        let body = serde_json::json!({"user": user, "statuses": statuses, "session": session,
            "context": {"country": country, "age": age, "interests": interests}});
        if let Ok(request) = serde_json::from_value::<SlotRequestBody>(body) {
            let _ = request.parse();
        }
    }

    #[test]
    fn media_sniffing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = media::inspect(&bytes);
    }

    #[test]
    fn mutated_media_never_panics(which in 0usize..3, position in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut file = match which {
            0 => media::png::solid_png(540, 960, [1, 2, 3]),
            1 => media::samples::sample_jpeg(540, 960),
            _ => media::samples::sample_mp4(540, 960, 5_000),
        };
        let position = position % file.len();
        file[position] = byte;
        file.truncate(cut % (file.len() + 1));
        let _ = media::inspect(&file);
    }
}
