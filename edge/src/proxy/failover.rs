//! Serial failover and the choice of the final response (RFC 3261 §16.7 steps 5–6).
//!
//! A call tries its target URIs one after another. A branch that times out or answers 408 or
//! 5xx (a 503 with Retry-After included) hands over to the next URI; any other final answer is
//! the callee's and goes upstream at once. When every URI has failed, the caller gets the best
//! response seen: the lowest class, or a 408 of our own when every branch timed out.

/// How one branch (client transaction) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchEnd {
    /// No final response in time (Timer B or Timer C).
    Timeout,
    /// A final response with this status code.
    Final(u16),
}

/// What to do after a branch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward this branch's response upstream; the call's fate is decided.
    ForwardThis,
    /// Try the next target URI.
    TryNext,
    /// Every target failed: forward the response stored from branch `index` (0-based order of
    /// tries).
    ForwardStored {
        /// Branch whose response is the best.
        index: usize,
    },
    /// Every target failed and none answered: send our own 408 Request Timeout.
    Generate408,
}

/// The response context of one server transaction across its serial branches.
#[derive(Debug, Clone, Default)]
pub struct ResponseContext {
    /// Best response so far: `(branch index, status code)`.
    best: Option<(usize, u16)>,
    /// Branches ended so far.
    ended: usize,
}

/// Whether a final answer sends the call on to the next target.
pub fn fails_over(end: BranchEnd) -> bool {
    match end {
        BranchEnd::Timeout => true,
        BranchEnd::Final(code) => code == 408 || (500..=599).contains(&code),
    }
}

impl ResponseContext {
    /// A branch ended; `more_targets` says whether an untried URI remains.
    pub fn on_branch_end(&mut self, end: BranchEnd, more_targets: bool) -> Decision {
        let index = self.ended;
        self.ended += 1;
        if !fails_over(end) {
            return Decision::ForwardThis;
        }
        if let BranchEnd::Final(code) = end {
            // Lowest class wins; within a class the first seen.
            if self.best.is_none_or(|(_, best)| code / 100 < best / 100) {
                self.best = Some((index, code));
            }
        }
        if more_targets {
            return Decision::TryNext;
        }
        match self.best {
            Some((index, _)) => Decision::ForwardStored { index },
            None => Decision::Generate408,
        }
    }

    /// The branch whose response is the best so far, if any answered.
    pub fn best_index(&self) -> Option<usize> {
        self.best.map(|(i, _)| i)
    }

    /// Branches ended so far.
    pub fn branches_ended(&self) -> usize {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BranchEnd::*;

    #[test]
    fn failover_table() {
        // (branch ends in order, with more targets after each except the last) → decisions
        let cases: &[(&[BranchEnd], &[Decision])] = &[
            (&[Final(200)], &[Decision::ForwardThis]),
            (&[Final(486)], &[Decision::ForwardThis]),
            (&[Final(404)], &[Decision::ForwardThis]),
            (&[Timeout, Final(180 + 20)], &[Decision::TryNext, Decision::ForwardThis]),
            (&[Final(503), Final(200)], &[Decision::TryNext, Decision::ForwardThis]),
            (&[Final(503), Final(603)], &[Decision::TryNext, Decision::ForwardThis]),
            (&[Timeout, Timeout], &[Decision::TryNext, Decision::Generate408]),
            (&[Final(503), Timeout], &[Decision::TryNext, Decision::ForwardStored { index: 0 }]),
            (&[Final(500), Final(408)], &[Decision::TryNext, Decision::ForwardStored { index: 1 }]),
            (
                &[Final(502), Final(503), Final(504)],
                &[Decision::TryNext, Decision::TryNext, Decision::ForwardStored { index: 0 }],
            ),
        ];
        for (ends, want) in cases {
            let mut ctx = ResponseContext::default();
            let got: Vec<Decision> =
                ends.iter().enumerate().map(|(i, e)| ctx.on_branch_end(*e, i + 1 < ends.len())).collect();
            assert_eq!(&got, want, "{ends:?}");
        }
    }
}
