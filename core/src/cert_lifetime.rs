//! When a node's certificate is renewed, and when its coming expiry is
//! warned about: the decisions behind self-renewing certificates, on
//! validity windows in unix seconds.
//!
//! A node that holds the CA key re-issues a certificate once a third of
//! its span (not before to not after) is left, with the same span; one
//! without the key warns from 30 days before the end.

/// A certificate is renewed once at most this part of its span is left.
pub const RENEW_WHEN_LEFT_DIVISOR: i64 = 3;
/// A certificate nobody here can renew is warned about this long before
/// it ends.
pub const EXPIRY_WARNING_S: i64 = 30 * 24 * 60 * 60;
/// New certificates start this long before they are made, for clocks a
/// little behind (less for short spans: a tenth of the span).
pub const BACKDATE_S_MAX: i64 = 5 * 60;

/// Where a certificate stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// More than a third of its span is left.
    Fresh,
    /// A third or less is left: a node with the CA key renews it now.
    RenewalDue,
}

/// A certificate's validity, in unix seconds, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before_s: i64,
    pub not_after_s: i64,
}

impl Validity {
    /// The validity of a new certificate made at `now_s` that is good for
    /// `lifetime_s` from now, backdated a little.
    pub fn issued_at(now_s: i64, lifetime_s: i64) -> Self {
        assert!(lifetime_s > 0, "a certificate's lifetime is positive");
        Self {
            not_before_s: now_s.saturating_sub(backdate_s(lifetime_s)),
            not_after_s: now_s.saturating_add(lifetime_s),
        }
    }

    pub fn span_s(&self) -> i64 {
        self.not_after_s.saturating_sub(self.not_before_s).max(0)
    }

    pub fn standing(&self, now_s: i64) -> Standing {
        let left_s = self.not_after_s.saturating_sub(now_s);
        if left_s <= self.span_s() / RENEW_WHEN_LEFT_DIVISOR {
            Standing::RenewalDue
        } else {
            Standing::Fresh
        }
    }

    /// The validity of the certificate that renews this one at `now_s`:
    /// the same span, shifted to start (backdated) now.
    pub fn renewed_at(&self, now_s: i64) -> Self {
        let span_s = self.span_s().max(1);
        let not_before_s = now_s.saturating_sub(backdate_s(span_s));
        Self {
            not_before_s,
            not_after_s: not_before_s.saturating_add(span_s),
        }
    }

    /// Whether the end is near enough (30 days) to warn about when the
    /// certificate cannot be renewed here.
    pub fn expiry_warning_due(&self, now_s: i64) -> bool {
        self.not_after_s.saturating_sub(now_s) <= EXPIRY_WARNING_S
    }
}

/// How far back a certificate good for `span_s` is dated.
pub fn backdate_s(span_s: i64) -> i64 {
    (span_s / 10).clamp(0, BACKDATE_S_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const YEAR_S: i64 = 365 * 24 * 60 * 60;

    #[test]
    fn a_year_long_certificate_renews_four_months_before_its_end() {
        let now_s = 1_800_000_000;
        let validity = Validity::issued_at(now_s, YEAR_S);
        assert_eq!(validity.not_before_s, now_s - BACKDATE_S_MAX);
        let renews_at = validity.not_after_s - validity.span_s() / 3;
        assert_eq!(validity.standing(renews_at - 1), Standing::Fresh);
        assert_eq!(validity.standing(renews_at), Standing::RenewalDue);
        assert!(!validity.expiry_warning_due(renews_at));
        assert!(validity.expiry_warning_due(validity.not_after_s - EXPIRY_WARNING_S));
    }

    proptest! {
        /// A renewed certificate keeps its span, is valid from (a little
        /// before) the renewal, and is not due again right away: renewal
        /// never loops.
        #[test]
        fn a_renewed_certificate_is_fresh_and_as_long(
            not_before_s in 0i64..4_000_000_000,
            span_s in 1i64..20 * YEAR_S,
            into_span in 0.0f64..2.0,
        ) {
            let old = Validity { not_before_s, not_after_s: not_before_s + span_s };
            let now_s = not_before_s + (span_s as f64 * into_span) as i64;
            let new = old.renewed_at(now_s);
            prop_assert_eq!(new.span_s(), span_s);
            prop_assert!(new.not_before_s <= now_s && now_s < new.not_after_s);
            prop_assert_eq!(new.standing(now_s), Standing::Fresh);
        }

        /// Due exactly once a third of the span or less is left, and
        /// from then on until the end and after.
        #[test]
        fn renewal_is_due_from_the_last_third_on(
            not_before_s in 0i64..4_000_000_000,
            span_s in 0i64..20 * YEAR_S,
            now_s in 0i64..5_000_000_000,
        ) {
            let validity = Validity { not_before_s, not_after_s: not_before_s + span_s };
            let left_s = validity.not_after_s - now_s;
            let due = validity.standing(now_s) == Standing::RenewalDue;
            prop_assert_eq!(due, left_s * RENEW_WHEN_LEFT_DIVISOR <= span_s);
            if due {
                prop_assert_eq!(validity.standing(now_s + 1), Standing::RenewalDue);
            }
        }
    }
}
