//! Even pacing: spread a day's budget along the ideal line `budget * elapsed / day` whatever the
//! traffic does. Each campaign gets a throttle in [0, 1], the probability that it takes part in
//! a decision, recomputed on every spend refresh (about once a second) by a controller:
//!
//! - feedforward: the spend rate the campaign would reach at full throttle (its *demand*) is
//!   estimated from the last interval (`observed rate / throttle`, smoothed), and the throttle
//!   aims the rate at `budget / day`;
//! - feedback: the gap between the ideal line and the actual spend is closed over `CATCH_UP`
//!   by adding `gap / CATCH_UP` to the aimed rate. The gap is the integral of the rate error,
//!   so together this is a PI controller on the spend rate.
//!
//! `asap` campaigns are never throttled. Pure: time and spend come in as arguments.

use crate::clock::Millis;
use crate::domain::Micros;

const DAY_MS: f64 = 86_400_000.0;
/// How fast a gap to the ideal line is closed (seconds).
const CATCH_UP_S: f64 = 600.0;
/// Smoothing of the demand estimate (weight of the newest interval).
const DEMAND_SMOOTHING: f64 = 0.3;
/// Never fully off: a throttle of zero could never observe demand again.
const MIN_THROTTLE: f64 = 0.001;

#[derive(Debug, Clone, PartialEq)]
pub struct Pacer {
    throttle: f64,
    /// Spend per second at full throttle, smoothed; `None` until observed.
    demand: Option<f64>,
    last: Option<(Millis, Micros)>,
}

impl Default for Pacer {
    /// Starts cautious: demand is unknown, so a burst in the first second cannot overshoot much.
    fn default() -> Self {
        Self {
            throttle: 0.05,
            demand: None,
            last: None,
        }
    }
}

impl Pacer {
    pub fn throttle(&self) -> f64 {
        self.throttle
    }

    /// Feeds today's spend at `now` for a campaign whose budget for today is `daily_budget`.
    pub fn update(&mut self, daily_budget: Micros, spend_today: Micros, now_ms: Millis) {
        let day_start = now_ms - now_ms.rem_euclid(DAY_MS as i64);
        let elapsed = (now_ms - day_start) as f64;
        let budget = daily_budget as f64;
        match self.last {
            // A new UTC day (or a clock jump back): start the day's estimate from here.
            Some((at, spent)) if at >= day_start && now_ms > at && spend_today >= spent => {
                let seconds = (now_ms - at) as f64 / 1000.0;
                let observed = (spend_today - spent) as f64 / seconds;
                let at_full = observed / self.throttle.max(MIN_THROTTLE);
                self.demand = Some(match self.demand {
                    Some(demand) => demand + DEMAND_SMOOTHING * (at_full - demand),
                    None => at_full,
                });
            }
            _ => {}
        }
        self.last = Some((now_ms, spend_today));
        let ideal = budget * elapsed / DAY_MS;
        let remaining_s = ((DAY_MS - elapsed) / 1000.0).max(1.0);
        let base_rate = budget / (DAY_MS / 1000.0);
        let gap = ideal - spend_today as f64;
        // Never aim past what is left for the rest of the day.
        let aim = (base_rate + gap / CATCH_UP_S).clamp(
            0.0,
            (budget - spend_today as f64).max(0.0) / remaining_s.min(CATCH_UP_S),
        );
        self.throttle = match self.demand {
            // At or ahead of the line: hold back.
            _ if aim <= 0.0 => MIN_THROTTLE,
            Some(demand) if demand > 0.0 => (aim / demand).clamp(MIN_THROTTLE, 1.0),
            // Behind the line with no spend seen at this throttle yet: open up gradually.
            _ => (self.throttle * 2.0).min(1.0),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// One simulated day at one-second steps: traffic follows a day curve (quiet nights, an
    /// evening peak) with ±40% noise and bursts; each request the pacer lets through renders at
    /// `price`. Returns spend at the end of each hour.
    fn simulate(seed: u64, daily_budget: Micros, mean_requests: f64) -> Vec<Micros> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pacer = Pacer::default();
        let price = 2_000;
        let day0 = 1_795_000_000_000 - 1_795_000_000_000 % 86_400_000;
        let mut spend = 0;
        let mut hourly = Vec::new();
        for second in 0..86_400 {
            let now = day0 + second * 1000;
            pacer.update(daily_budget, spend, now);
            let phase = second as f64 / 86_400.0 * std::f64::consts::TAU;
            let curve = 1.0 - 0.7 * (phase).cos() + 0.3 * (2.0 * phase).sin();
            let burst = if rng.gen_bool(0.001) { 5.0 } else { 1.0 };
            let requests =
                (mean_requests * curve.max(0.1) * burst * rng.gen_range(0.6..1.4)).round() as u64;
            for _ in 0..requests {
                if rng.gen::<f64>() < pacer.throttle() && spend + price <= daily_budget {
                    spend += price;
                }
            }
            if (second + 1) % 3600 == 0 {
                hourly.push(spend);
            }
        }
        hourly
    }

    #[test]
    fn even_pacing_stays_within_10_percent_of_the_ideal_line_every_hour() {
        for seed in [1, 2, 3] {
            // Demand averages 40 requests/s at full throttle; the budget needs about a fifth.
            let budget = (40.0 * 0.2 * 86_400.0 * 2_000.0) as Micros;
            let hourly = simulate(seed, budget, 40.0);
            let mut worst: f64 = 0.0;
            for (hour, spend) in hourly.iter().enumerate() {
                let ideal = budget as f64 * (hour + 1) as f64 / 24.0;
                let error = (*spend as f64 - ideal).abs() / ideal;
                worst = worst.max(error);
                assert!(
                    error <= 0.10,
                    "seed {seed}, hour {}: spend {spend}, ideal {ideal:.0}, error {:.1}%",
                    hour + 1,
                    error * 100.0
                );
            }
            assert!(*hourly.last().unwrap() <= budget);
            println!("seed {seed}: worst hourly error {:.2}%", worst * 100.0);
        }
    }

    #[test]
    fn a_new_day_restarts_the_estimate() {
        let mut pacer = Pacer::default();
        let day = 86_400_000;
        pacer.update(1_000_000, 0, day + 1000);
        pacer.update(1_000_000, 500_000, day + 2000);
        assert!(
            pacer.throttle() < 0.05,
            "far ahead of the line: throttled hard ({})",
            pacer.throttle()
        );
        pacer.update(1_000_000, 0, 2 * day + 1000);
        pacer.update(1_000_000, 0, 2 * day + 2000);
        assert!(pacer.throttle() > 0.0);
    }
}
