//! Criterion micro-benchmarks of the hot path's pure parts: a slot decision over 1k / 10k / 100k
//! active campaigns (the eligibility index keeps cost sub-linear), token sign and verify, cap
//! evaluation, and preparing an event batch of 10 (token verification dominates).
//!
//! Also: a sampled decision (the same decision, explained: `selection::decide_explained`),
//! and a forecast replaying 100,000 sampled requests over 10,000 campaigns.
//!
//! `cargo bench --bench decisions`

#[path = "support/synthetic.rs"]
mod synthetic;

use std::collections::HashMap;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use statusads::capping::{self, SessionState, UserState};
use statusads::catalog::Snapshot;
use statusads::config::AdLoadSettings;
use statusads::domain::campaign::Spend;
use statusads::domain::ids::{new_decision_id, CampaignId};
use statusads::domain::slot::SlotRequest;
use statusads::domain::UserId;
use statusads::selection::{self, DecisionInput};
use statusads::store::codec;
use statusads::tokens::{Claims, TokenKeys};

const POLICY: AdLoadSettings = AdLoadSettings {
    first_after: 2,
    min_gap: 4,
    max_per_session: 3,
    max_per_user_per_day: 10,
};
const NOW_MS: i64 = 1_795_000_000_000;

/// One benchmark group of `decide` over catalogs of each size, on 256 synthetic requests of a
/// new user.
fn decide_group(
    c: &mut Criterion,
    name: &str,
    sizes: &[usize],
    decide: impl Fn(&DecisionInput<'_>, &mut StdRng) -> usize,
) {
    let mut group = c.benchmark_group(name);
    for &campaigns in sizes {
        let snapshot = Snapshot::build(synthetic::catalog(campaigns, 7), Default::default());
        let spend: HashMap<CampaignId, Spend> = HashMap::new();
        let user = UserState::default();
        let mut rng = StdRng::seed_from_u64(1);
        let requests: Vec<SlotRequest> = (0..256)
            .map(|i| SlotRequest {
                user: UserId::parse(&format!("u{i}")).unwrap(),
                session: None,
                statuses: 12,
                context: synthetic::context(&mut rng),
                personalized: None,
                state: None,
            })
            .collect();
        let mut next = 0;
        group.bench_with_input(
            BenchmarkId::from_parameter(campaigns),
            &campaigns,
            |b, _| {
                b.iter(|| {
                    next = (next + 1) % requests.len();
                    let input = DecisionInput {
                        snapshot: &snapshot,
                        budgets: &spend,
                        user: &user,
                        session: SessionState::default(),
                        request: &requests[next],
                        policy: POLICY,
                        reserve_cpm_micros: 500_000,
                        now_ms: NOW_MS,
                    };
                    black_box(decide(&input, &mut rng))
                })
            },
        );
    }
    group.finish();
}

fn decisions(c: &mut Criterion) {
    decide_group(c, "decide", &[1_000, 10_000, 100_000], |input, rng| {
        selection::decide(input, rng).placements.len()
    });
}

/// A sampled decision costs this much more than a plain one; at `insight.sample_rate` 0.01 the
/// average decision pays 1% of the difference.
fn sampled_decisions(c: &mut Criterion) {
    decide_group(c, "decide_explained", &[1_000, 10_000], |input, rng| {
        selection::decide_explained(input, rng).1.len()
    });
}

/// `POST /v1/forecast`'s replay: 100,000 sampled requests (25,000 users) over 10,000 campaigns.
fn forecasts(c: &mut Criterion) {
    use statusads::insight::forecast::{replay, Market, Samples};
    use statusads::insight::SampledRequest;
    use statusads::record::insight::StoredRequest;
    let catalog = synthetic::catalog(10_000, 7);
    let owner = catalog.advertisers[0].clone();
    let mut rng = StdRng::seed_from_u64(3);
    let stored: Vec<StoredRequest> = (0..100_000)
        .map(|i| StoredRequest {
            at_ms: NOW_MS - 7 * 86_400_000 + i * 6_000,
            user_key: format!("{:032x}", i % 25_000),
            request: serde_json::to_string(&SampledRequest {
                statuses: 12,
                session_served: 0,
                context: synthetic::context(&mut rng),
            })
            .unwrap(),
        })
        .collect();
    // Parsed once per basis, as a forecast does; timed apart below.
    let samples = Samples::parse(&stored);
    let proposed: statusads::domain::campaign::CampaignInput = serde_json::from_value(
        serde_json::json!({"name": "Proposal", "bid_cpm_micros": 3_000_000,
            "budget": {"total_micros": 1_000_000_000},
            "frequency_caps": [{"max": 2, "per_seconds": 86400}]}),
    )
    .unwrap();
    let now = time::OffsetDateTime::from_unix_timestamp(NOW_MS / 1000).unwrap();
    let campaign =
        statusads::domain::campaign::Campaign::create(proposed, &owner, &Default::default(), now)
            .unwrap();
    let market = Market {
        catalog: std::sync::Arc::new(Snapshot::build(catalog, Default::default())),
        spend: std::sync::Arc::new(statusads::ledger::SpendBoard::default()),
        policy: POLICY,
        reserve_cpm_micros: 500_000,
        rate: 0.01,
    };
    let mut group = c.benchmark_group("forecast");
    group.sample_size(10);
    group.bench_function("100k_requests_10k_campaigns", |b| {
        b.iter(|| {
            black_box(replay(campaign.clone(), &market, &samples, stored.len() as u64).impressions)
        })
    });
    group.bench_function("parse_100k_requests", |b| {
        b.iter(|| black_box(Samples::parse(&stored)))
    });
    group.finish();
}

fn claims() -> Claims {
    Claims {
        decision_id: new_decision_id(),
        user: UserId::parse("user-123456").unwrap(),
        campaign: statusads::domain::ids::CampaignId::generate(),
        creative: statusads::domain::ids::CreativeId::generate(),
        advertiser: statusads::domain::ids::AdvertiserId::generate(),
        price_micros: 2_500,
        expires_at_ms: NOW_MS + 900_000,
        coarse: Default::default(),
        personalized: true,
    }
}

fn tokens(c: &mut Criterion) {
    let keys = TokenKeys::new(b"bench-signing-key-0123456789abcdef", &[]);
    let claim = claims();
    let token = keys.sign(&claim);
    c.bench_function("token/sign", |b| {
        b.iter(|| black_box(keys.sign(black_box(&claim))))
    });
    c.bench_function("token/verify", |b| {
        b.iter(|| black_box(keys.verify(black_box(&token)).is_ok()))
    });
    let batch: Vec<String> = (0..10).map(|_| keys.sign(&claims())).collect();
    c.bench_function("events/verify_batch_of_10", |b| {
        b.iter(|| black_box(batch.iter().filter(|t| keys.verify(t).is_ok()).count()))
    });
}

fn caps(c: &mut Criterion) {
    let data = synthetic::catalog(50, 3);
    let campaign = data.campaigns[0].clone();
    // A heavy user, stored as the stores store it: renders of 50 campaigns, 10 renders today,
    // one reservation.
    let now_s = NOW_MS / 1000;
    let mut fields: Vec<(String, String)> = data
        .campaigns
        .iter()
        .map(|c| {
            (
                codec::campaign_field(c.id.as_str()),
                codec::encode_stamps(&[now_s - 7_200, now_s - 60]),
            )
        })
        .collect();
    fields.push((
        "d".into(),
        codec::encode_stamps(&(0..10).map(|i| now_s - i * 60).collect::<Vec<_>>()),
    ));
    let reservation = capping::Reservation {
        decision_id: "0123456789abcdef0123456789abcdef".into(),
        campaign: campaign.id.to_string(),
        advertiser: campaign.advertiser_id.to_string(),
        expires_ms: NOW_MS + 1000,
    };
    fields.push((reservation.field(), reservation.value()));
    let state = UserState::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(state.campaign_renders.len(), 50, "the fixture parses");
    c.bench_function("caps/parse_user_state_50_campaigns", |b| {
        b.iter(|| {
            black_box(
                UserState::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .reservations
                    .len(),
            )
        })
    });
    c.bench_function("caps/allow", |b| {
        b.iter(|| black_box(state.caps_allow(black_box(&campaign), NOW_MS)))
    });
}

criterion_group!(
    benches,
    decisions,
    sampled_decisions,
    forecasts,
    tokens,
    caps
);
criterion_main!(benches);
