//! Second-price auction with a reserve: the winner pays the larger of the reserve and the best
//! competing bid of another advertiser, never more than its own bid. Bids below the reserve
//! never win. Equal top bids are broken at random.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::domain::Micros;

pub struct Bid<'a, T> {
    pub item: T,
    pub advertiser: &'a str,
    pub cpm_micros: Micros,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Win<T> {
    pub item: T,
    pub clearing_cpm_micros: Micros,
    /// The competing bid that set the price, if one did (else the reserve or no competition).
    pub price_setter: Option<T>,
}

pub fn run<T>(mut bids: Vec<Bid<'_, T>>, reserve: Micros, rng: &mut impl Rng) -> Option<Win<T>> {
    bids.retain(|b| b.cpm_micros >= reserve);
    // Shuffle, then a stable sort: equal bids end up in random order.
    bids.shuffle(rng);
    bids.sort_by_key(|b| std::cmp::Reverse(b.cpm_micros));
    let mut ranked = bids.into_iter();
    let winner = ranked.next()?;
    let runner_up = ranked.find(|b| b.advertiser != winner.advertiser);
    let clearing = runner_up
        .as_ref()
        .map_or(reserve, |b| b.cpm_micros)
        .max(reserve)
        .min(winner.cpm_micros);
    Some(Win {
        item: winner.item,
        clearing_cpm_micros: clearing,
        price_setter: runner_up.map(|b| b.item),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn bid(
        name: &'static str,
        advertiser: &'static str,
        cpm: Micros,
    ) -> Bid<'static, &'static str> {
        Bid {
            item: name,
            advertiser,
            cpm_micros: cpm,
        }
    }

    #[test]
    fn winner_pays_the_runner_up_bid() {
        let mut rng = StdRng::seed_from_u64(1);
        let win = run(
            vec![
                bid("a", "A", 3_000_000),
                bid("b", "B", 2_000_000),
                bid("c", "C", 1_000_000),
            ],
            500_000,
            &mut rng,
        );
        assert_eq!(
            win,
            Some(Win {
                item: "a",
                clearing_cpm_micros: 2_000_000,
                price_setter: Some("b"),
            })
        );
    }

    #[test]
    fn lone_bidder_pays_the_reserve_and_low_bids_never_win() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            run(vec![bid("a", "A", 3_000_000)], 500_000, &mut rng)
                .unwrap()
                .clearing_cpm_micros,
            500_000
        );
        assert_eq!(run(vec![bid("a", "A", 400_000)], 500_000, &mut rng), None);
        // A runner-up below the reserve is ignored: the reserve is the floor.
        let win = run(
            vec![bid("a", "A", 900_000), bid("b", "B", 100_000)],
            500_000,
            &mut rng,
        )
        .unwrap();
        assert_eq!(win.clearing_cpm_micros, 500_000);
    }

    #[test]
    fn the_same_advertiser_does_not_raise_its_own_price() {
        let mut rng = StdRng::seed_from_u64(1);
        let win = run(
            vec![
                bid("a1", "A", 3_000_000),
                bid("a2", "A", 2_900_000),
                bid("b", "B", 1_000_000),
            ],
            500_000,
            &mut rng,
        );
        assert_eq!(win.unwrap().clearing_cpm_micros, 1_000_000);
    }

    #[test]
    fn ties_are_broken_at_random_and_pay_the_tied_bid() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut wins = std::collections::HashMap::new();
        for _ in 0..400 {
            let win = run(
                vec![bid("a", "A", 2_000_000), bid("b", "B", 2_000_000)],
                500_000,
                &mut rng,
            )
            .unwrap();
            assert_eq!(win.clearing_cpm_micros, 2_000_000);
            *wins.entry(win.item).or_insert(0) += 1;
        }
        assert!(wins["a"] > 120 && wins["b"] > 120, "{wins:?}");
    }
}
