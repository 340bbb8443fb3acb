//! The ad-load policy as positions in a queue of statuses. Position p = "after the user viewed p
//! statuses of this request". A session is one continuous feed across its requests: `carry` is the
//! number of statuses viewed since the session's last ad (or its start), so `first_after` and
//! `min_gap` hold across request boundaries too.

use crate::capping::SessionState;
use crate::config::AdLoadSettings;

/// Up to `quota` positions in `1..=statuses` obeying first_after and min_gap.
pub fn positions(
    policy: &AdLoadSettings,
    session: SessionState,
    statuses: u32,
    quota: u32,
) -> Vec<u32> {
    let mut out = Vec::new();
    let mut last: Option<u32> = None;
    while (out.len() as u32) < quota {
        let earliest = match last {
            Some(previous) => previous + policy.min_gap,
            None if session.served == 0 => policy.first_after.saturating_sub(session.carry),
            None => policy.min_gap.saturating_sub(session.carry),
        }
        .max(1);
        if earliest > statuses {
            break;
        }
        out.push(earliest);
        last = Some(earliest);
    }
    out
}

/// The session after the user passes this request's statuses with ads at `placed`.
pub fn advance(
    session: SessionState,
    statuses: u32,
    placed: impl Iterator<Item = u32>,
) -> SessionState {
    let mut count = 0;
    let mut last = None;
    for position in placed {
        count += 1;
        last = Some(position);
    }
    match last {
        Some(position) => SessionState {
            served: session.served + count,
            carry: statuses - position,
        },
        None => SessionState {
            served: session.served,
            carry: session.carry.saturating_add(statuses),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AdLoadSettings = AdLoadSettings {
        first_after: 2,
        min_gap: 4,
        max_per_session: 3,
        max_per_user_per_day: 10,
    };

    #[test]
    fn first_request_of_a_session() {
        assert_eq!(
            positions(&POLICY, SessionState::default(), 12, 3),
            vec![2, 6, 10]
        );
        assert_eq!(
            positions(&POLICY, SessionState::default(), 12, 2),
            vec![2, 6]
        );
        assert_eq!(
            positions(&POLICY, SessionState::default(), 1, 3),
            Vec::<u32>::new()
        );
        assert_eq!(
            positions(&POLICY, SessionState::default(), 0, 3),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn gaps_carry_across_requests() {
        // Ad at 10 of 12: two statuses since it, so the next request needs two more first.
        let after = advance(SessionState::default(), 12, [2, 6, 10].into_iter());
        assert_eq!(
            after,
            SessionState {
                served: 3,
                carry: 2
            }
        );
        let next = SessionState {
            served: 1,
            carry: 2,
        };
        assert_eq!(positions(&POLICY, next, 12, 2), vec![2, 6]);
        let next = SessionState {
            served: 1,
            carry: 9,
        };
        assert_eq!(positions(&POLICY, next, 12, 1), vec![1]);
        // Before the first ad the carry counts towards first_after.
        let fresh = advance(SessionState::default(), 1, std::iter::empty());
        assert_eq!(positions(&POLICY, fresh, 5, 1), vec![1]);
    }
}
