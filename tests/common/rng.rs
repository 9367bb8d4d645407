//! xorshift64*: a small deterministic generator, so test failures reproduce and benchmark runs
//! are comparable. Shared by tests and benches through `#[path]`.

/// The generator's state; any non-zero seed.
pub struct Rng(pub u64);

#[allow(dead_code)] // Each user needs a different subset.
impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One of `items` (non-empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
