//! Arch numbering: the base-5 product index and the benchmark's shuffled index order.

use std::sync::OnceLock;

use super::{Arch, Op, NUM_ARCHS};

impl Arch {
    /// The arch with this base-5 product index (edges in arch-string order, last edge
    /// fastest; 0 is all-`none`). Panics unless `index < NUM_ARCHS`.
    pub fn from_product_index(index: u32) -> Arch {
        assert!(
            (index as usize) < NUM_ARCHS,
            "product index {index} out of range"
        );
        let mut rest = index as usize;
        let mut ops = [Op::None; 6];
        for slot in ops.iter_mut().rev() {
            *slot = Op::ALL[rest % 5];
            rest /= 5;
        }
        Arch { ops }
    }

    /// The arch's base-5 product index (inverse of [`Arch::from_product_index`]).
    pub fn product_index(&self) -> u32 {
        self.ops
            .iter()
            .fold(0, |acc, op| acc * 5 + op.index() as u32)
    }
}

/// The benchmark index order: product index by benchmark index, and its inverse.
struct IndexOrder {
    product_of_index: Vec<u16>,
    index_of_product: Vec<u16>,
}

fn index_order() -> &'static IndexOrder {
    static ORDER: OnceLock<IndexOrder> = OnceLock::new();
    ORDER.get_or_init(|| {
        // The benchmark shuffled the product-ordered list with `random.seed(88)`.
        let mut product_of_index: Vec<u16> = (0..NUM_ARCHS as u16).collect();
        Mt19937::from_key(&[88]).shuffle(&mut product_of_index);
        let mut index_of_product = vec![0; NUM_ARCHS];
        for (index, &product) in product_of_index.iter().enumerate() {
            index_of_product[product as usize] = index as u16;
        }
        IndexOrder {
            product_of_index,
            index_of_product,
        }
    })
}

/// The arch at this benchmark index, or `None` past the end of the benchmark.
pub fn arch_of_index(index: usize) -> Option<Arch> {
    let product = *index_order().product_of_index.get(index)?;
    Some(Arch::from_product_index(product.into()))
}

/// The benchmark index of an arch.
pub fn index_of_arch(arch: &Arch) -> usize {
    index_order().index_of_product[arch.product_index() as usize].into()
}

/// Every arch with its benchmark index, in index order.
pub fn benchmark_archs() -> impl Iterator<Item = (usize, Arch)> {
    let order = index_order();
    order
        .product_of_index
        .iter()
        .enumerate()
        .map(|(index, &product)| (index, Arch::from_product_index(product.into())))
}

/// The Mersenne Twister as Python's `random` module drives it, enough to replay
/// `random.seed(n); random.shuffle(list)`.
struct Mt19937 {
    state: [u32; 624],
    next: usize,
}

impl Mt19937 {
    const N: usize = 624;
    const M: usize = 397;

    /// `init_genrand`: the reference single-word seeding.
    fn from_seed(seed: u32) -> Mt19937 {
        let mut state = [0u32; Self::N];
        state[0] = seed;
        for i in 1..Self::N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 {
            state,
            next: Self::N,
        }
    }

    /// `init_by_array`: what Python's `random.seed(int)` uses, with the integer's 32-bit
    /// words as the key (`[88]` for seed 88).
    fn from_key(key: &[u32]) -> Mt19937 {
        let mut mt = Mt19937::from_seed(19_650_218);
        let s = &mut mt.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..Self::N.max(key.len()) {
            let prev = s[i - 1];
            s[i] = (s[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= Self::N {
                s[0] = s[Self::N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..Self::N - 1 {
            let prev = s[i - 1];
            s[i] =
                (s[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= Self::N {
                s[0] = s[Self::N - 1];
                i = 1;
            }
        }
        s[0] = 0x8000_0000;
        mt
    }

    fn next_u32(&mut self) -> u32 {
        if self.next >= Self::N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        let s = &mut self.state;
        for i in 0..Self::N {
            let y = (s[i] & 0x8000_0000) | (s[(i + 1) % Self::N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            s[i] = s[(i + Self::M) % Self::N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// Python's `getrandbits(k)` for `1 <= k <= 32`: the top `k` bits of one output.
    fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.next_u32() >> (32 - k)
    }

    /// Python's `_randbelow(n)`: draws of `n.bit_length()` bits until one is below `n`.
    fn randbelow(&mut self, n: u32) -> u32 {
        let k = u32::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// Python's `random.shuffle`.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3 after `random.seed(88)`.

    #[test]
    fn full_words_match_python() {
        let mut mt = Mt19937::from_key(&[88]);
        let words: Vec<u32> = (0..3).map(|_| mt.getrandbits(32)).collect();
        assert_eq!(words, [1_707_201_716, 4_182_107_318, 813_946_014]);
    }

    #[test]
    fn short_draws_and_randbelow_match_python() {
        // [getrandbits(5) x3] then [randrange(1000) x3]
        let mut mt = Mt19937::from_key(&[88]);
        let bits: Vec<u32> = (0..3).map(|_| mt.getrandbits(5)).collect();
        assert_eq!(bits, [12, 31, 6]);
        let below: Vec<u32> = (0..3).map(|_| mt.randbelow(1000)).collect();
        assert_eq!(below, [340, 924, 189]);
    }

    #[test]
    fn shuffle_matches_python() {
        let mut items: Vec<u32> = (0..20).collect();
        Mt19937::from_key(&[88]).shuffle(&mut items);
        assert_eq!(
            items,
            [18, 14, 9, 4, 1, 17, 13, 3, 2, 7, 16, 15, 11, 19, 8, 0, 5, 10, 6, 12]
        );
    }

    #[test]
    fn product_index_round_trips() {
        for index in 0..NUM_ARCHS as u32 {
            assert_eq!(Arch::from_product_index(index).product_index(), index);
        }
        assert_eq!(Arch::from_product_index(0).ops, [Op::None; 6]);
        let one = Arch::from_product_index(1);
        assert_eq!(one.ops[5], Op::SkipConnect);
        assert!(one.ops[..5].iter().all(|&op| op == Op::None));
    }
}
