//! A TD that storms #VE: the same instruction faulting again and again (a #VE handler that
//! cannot emulate it and returns to it, say). Each round makes a TDCALL (VEINFO.GET), so the
//! hang watchdog never fires; this counts #VEs injected at one RIP in a row instead.

/// #VEs in a row at one RIP after which the TD counts as storming.
pub const STORM_LIMIT: u32 = 10_000;

/// The run of #VEs at one RIP.
#[derive(Clone, Copy, Debug, Default)]
pub struct VeStorm {
    rip: u64,
    count: u32,
}

impl VeStorm {
    /// Notes a #VE injected at `rip`; true once [`STORM_LIMIT`] came in a row there.
    pub fn observe(&mut self, rip: u64) -> bool {
        if rip == self.rip {
            self.count = self.count.saturating_add(1);
        } else {
            *self = VeStorm { rip, count: 1 };
        }
        self.count >= STORM_LIMIT
    }

    /// The RIP of the current run and its length.
    pub fn current(&self) -> (u64, u32) {
        (self.rip, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_long_run_at_one_rip_is_a_storm() {
        let mut storm = VeStorm::default();
        for i in 0..STORM_LIMIT - 1 {
            assert!(!storm.observe(0x1000), "{i}");
        }
        assert!(storm.observe(0x1000));
        // Progress elsewhere resets the run: a loop of CPUIDs at two sites is no storm.
        let mut busy = VeStorm::default();
        for i in 0..3 * STORM_LIMIT {
            assert!(!busy.observe(0x2000 + u64::from(i % 2)));
        }
        assert_eq!(busy.current().1, 1);
    }
}
