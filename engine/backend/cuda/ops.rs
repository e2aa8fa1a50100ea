//! Host side of each kernel: buffer length checks, launch configuration, argument order.
//! Generic over the [`Launcher`], so the emulator tests exactly what the GPU runs.
//!
//! Buffers hold f32 (`Buf`), u64 (codes, counts) or f64 (Gram accumulators); activations
//! (and their gradients) are in the launcher's activation storage ([`Launcher::storage`]:
//! f32, or 16 bits through a [`StorageLauncher`](super::launch::StorageLauncher)). Every
//! function checks its buffers' lengths against the geometry before launching, which is what
//! makes the `unsafe` launches sound.

use super::launch::{
    as_bytes, int, long, Arg, LaunchConfig, LaunchError, Launcher, Scratch, StorageLauncher,
};
use super::Storage;
use crate::backend::{BnGeom, BnGrad, ChannelView, ConvGeom, Reduction};
use crate::net::init::InitRule;

type Result<T = ()> = std::result::Result<T, LaunchError>;

/// Threads per block of the elementwise (grid-stride) kernels.
const ELEMENTWISE_BLOCK: u32 = 256;
/// Threads per block of the block-reduction kernels (a multiple of 32).
const REDUCE_BLOCK: u32 = 128;
/// Grid-stride kernels never need more blocks than this to fill a device.
const MAX_GRID: u64 = 8192;
/// The tile edge of hamming.cu and gram.cu (HAMMING_TILE, GRAM_TILE).
const TILE: u32 = 16;

fn check_len<L: Launcher, T>(l: &L, buf: &L::Buf, want: usize, what: &str) -> Result {
    check_len_bytes(l, buf, want * std::mem::size_of::<T>(), what)
}

fn check_len_bytes<L: Launcher>(l: &L, buf: &L::Buf, want_bytes: usize, what: &str) -> Result {
    let got = l.byte_len(buf);
    if got == want_bytes {
        Ok(())
    } else {
        Err(LaunchError::Length(format!(
            "{what}: {got} bytes, the geometry needs {want_bytes}"
        )))
    }
}

/// [`check_len`] for an activation buffer: `want` values of the launcher's activation
/// storage.
fn check_act<L: Launcher>(l: &L, buf: &L::Buf, want: usize, what: &str) -> Result {
    check_len_bytes(l, buf, want * l.storage().value_bytes(), what)
}

fn grid_for(items: u64, per_block: u64) -> u32 {
    items.div_ceil(per_block).clamp(1, MAX_GRID) as u32
}

fn elementwise(len: usize) -> LaunchConfig {
    LaunchConfig::new(
        grid_for(len as u64, u64::from(ELEMENTWISE_BLOCK)),
        ELEMENTWISE_BLOCK,
    )
}

fn per_block(items: usize) -> LaunchConfig {
    LaunchConfig::new(grid_for(items as u64, 1), REDUCE_BLOCK)
}

fn tiles(n: usize) -> Result<u32> {
    u32::try_from(n.div_ceil(TILE as usize)).map_err(|_| LaunchError::SizeOverflow(n))
}

/// `dst += src` over `len` values.
pub fn add_assign<L: Launcher>(l: &L, len: usize, dst: &mut L::Buf, src: &L::Buf) -> Result {
    check_act(l, dst, len, "add_assign dst")?;
    check_act(l, src, len, "add_assign src")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [Arg::BufMut(dst), Arg::Buf(src), Arg::I64(long(len)?)];
    // SAFETY: both buffers hold `len` f32 (checked).
    unsafe { l.launch("add_assign", elementwise(len), args) }
}

/// `dst = src` over `len` values held as `from` in `src` and as `to` in `dst` (one of them f32:
/// a 16-bit value is converted through f32 anyway).
pub fn convert_storage<L: Launcher>(
    l: &L,
    len: usize,
    (src, from): (&L::Buf, Storage),
    (dst, to): (&mut L::Buf, Storage),
) -> Result {
    let (kernel, variant) = match (from, to) {
        (Storage::F32, Storage::F32) => return l.copy(src, dst),
        (Storage::F32, _) => ("to_storage", to),
        (_, Storage::F32) => ("from_storage", from),
        _ => {
            return Err(LaunchError::BadArgs {
                kernel: "convert_storage".into(),
                detail: format!("{from:?} to {to:?}: one side must be f32"),
            })
        }
    };
    check_len_bytes(l, src, len * from.value_bytes(), "convert_storage src")?;
    check_len_bytes(l, dst, len * to.value_bytes(), "convert_storage dst")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [Arg::Buf(src), Arg::BufMut(dst), Arg::I64(long(len)?)];
    // SAFETY: src and dst hold `len` values of their storages (checked).
    unsafe { StorageLauncher::new(l, variant).launch(kernel, elementwise(len), args) }
}

/// `dst[offset..offset + len] = src` for `src` of `len` values (`dst` holds at least
/// `offset + len`).
pub fn copy_into<L: Launcher>(
    l: &L,
    len: usize,
    src: &L::Buf,
    dst: &mut L::Buf,
    offset: usize,
) -> Result {
    check_act(l, src, len, "copy_into src")?;
    let dst_len = l.byte_len(dst) / l.storage().value_bytes();
    if offset.checked_add(len).is_none_or(|end| end > dst_len) {
        return Err(LaunchError::Length(format!(
            "copy_into: {len} values at offset {offset} do not fit {dst_len}"
        )));
    }
    if len == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(src),
        Arg::BufMut(dst),
        Arg::I64(long(len)?),
        Arg::I64(long(offset)?),
    ];
    // SAFETY: src holds `len` f32 and dst at least `offset + len` (checked).
    unsafe { l.launch("copy_into", elementwise(len), args) }
}

/// u64 words per parameter in the table of kernels/init.cu (INIT_WORDS), and its rule codes
/// (INIT_CONSTANT, INIT_SYMMETRIC_UNIFORM).
const INIT_WORDS: usize = 5;
const INIT_CONSTANT: u64 = 0;
const INIT_SYMMETRIC_UNIFORM: u64 = 1;
/// u64 words per copy in the table of copy_into_many (kernels/elementwise.cu).
const COPY_WORDS: usize = 4;
/// Grid rows of one launch: one per parameter.
const MAX_GRID_Y: usize = 65_535;

/// A table of `count` entries of a kernel that runs one grid row per entry, uploaded to
/// scratch, and its launch: grid x covers `items` per row (grid-stride), grid y the entries.
fn table_launch<'l, L: Launcher>(
    l: &'l L,
    table: &[u64],
    count: usize,
    items: usize,
) -> Result<(Scratch<'l, L>, LaunchConfig)> {
    if count > MAX_GRID_Y {
        return Err(LaunchError::SizeOverflow(count));
    }
    let mut on_device = l.scratch::<u64>(table.len())?;
    l.write_bytes(as_bytes(table), &mut on_device)?;
    let config = LaunchConfig::new(
        (
            grid_for(items as u64, u64::from(ELEMENTWISE_BLOCK)),
            count as u32,
        ),
        ELEMENTWISE_BLOCK,
    );
    Ok((on_device, config))
}

/// `dst[offset..offset + len(src)] = src` for each (src, dst, offset) of `copies`, f32
/// buffers (kernels/elementwise.cu): one table upload and one launch for all of them.
pub fn copy_into_many<L: Launcher>(l: &L, copies: &mut [(&L::Buf, &mut L::Buf, usize)]) -> Result {
    let mut table = Vec::with_capacity(copies.len() * COPY_WORDS);
    let mut longest = 0;
    for (src, dst, offset) in copies.iter_mut() {
        let f32s = |bytes: usize| bytes / std::mem::size_of::<f32>();
        let (len, dst_len) = (f32s(l.byte_len(src)), f32s(l.byte_len(dst)));
        if offset.checked_add(len).is_none_or(|end| end > dst_len) {
            return Err(LaunchError::Length(format!(
                "copy_into_many: {len} values at offset {offset} do not fit {dst_len}"
            )));
        }
        if len > 0 {
            table.extend([
                l.read_address(src),
                l.address(dst),
                len as u64,
                *offset as u64,
            ]);
            longest = longest.max(len);
        }
    }
    let count = table.len() / COPY_WORDS;
    if count == 0 {
        return Ok(());
    }
    let (on_device, config) = table_launch(l, &table, count, longest)?;
    let args = &mut [Arg::Buf(&*on_device), Arg::I32(int(count)?)];
    // SAFETY: each entry addresses a live source of `len` f32 and a live destination of at
    // least `offset + len` (checked); both outlive the launch in stream order.
    unsafe { l.launch("copy_into_many", config, args) }
}

/// Draws initial values into parameter buffers (kernels/init.cu): each of `params` is a
/// buffer of `len` f32 and its rule. One upload of a table of addresses and one launch,
/// whatever the number of parameters.
pub fn init_params<L: Launcher>(
    l: &L,
    seed: u64,
    params: &mut [(&mut L::Buf, usize, InitRule)],
) -> Result {
    let mut table = Vec::with_capacity(params.len() * INIT_WORDS);
    let mut longest = 0;
    for (buf, len, rule) in params.iter_mut() {
        check_len::<L, f32>(l, buf, *len, "init_params")?;
        if *len == 0 {
            continue;
        }
        let (code, stream, value) = match *rule {
            InitRule::Constant(value) => (INIT_CONSTANT, 0, value),
            InitRule::SymmetricUniform { stream, bound } => (INIT_SYMMETRIC_UNIFORM, stream, bound),
        };
        table.extend([l.address(buf), *len as u64, code, stream, value.to_bits()]);
        longest = longest.max(*len);
    }
    let count = table.len() / INIT_WORDS;
    if count == 0 {
        return Ok(());
    }
    let (on_device, config) = table_launch(l, &table, count, longest.div_ceil(4))?;
    let args = &mut [Arg::Buf(&*on_device), Arg::I32(int(count)?), Arg::U64(seed)];
    // SAFETY: the table holds `count` entries, each the address of a live buffer of the
    // length it states (checked above); the buffers outlive the launch in stream order.
    unsafe { l.launch("init_params", config, args) }
}

/// `y = max(x, 0)` over `len` values.
pub fn relu_forward<L: Launcher>(l: &L, len: usize, x: &L::Buf, y: &mut L::Buf) -> Result {
    check_act(l, x, len, "relu_forward x")?;
    check_act(l, y, len, "relu_forward y")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [Arg::Buf(x), Arg::BufMut(y), Arg::I64(long(len)?)];
    // SAFETY: both buffers hold `len` f32 (checked).
    unsafe { l.launch("relu_forward", elementwise(len), args) }
}

/// `dx += dy * [x > 0]` over `len` values (without `accumulate`: `dx` overwritten with what
/// adding to zeros gives, its contents unspecified before; so for every `accumulate` below).
pub fn relu_backward<L: Launcher>(
    l: &L,
    len: usize,
    x: &L::Buf,
    dy: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    check_act(l, x, len, "relu_backward x")?;
    check_act(l, dy, len, "relu_backward dy")?;
    check_act(l, dx, len, "relu_backward dx")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(x),
        Arg::Buf(dy),
        Arg::BufMut(dx),
        Arg::I64(long(len)?),
        Arg::I32(i32::from(accumulate)),
    ];
    // SAFETY: all three buffers hold `len` f32 (checked).
    unsafe { l.launch("relu_backward", elementwise(len), args) }
}

fn code_launch(n: usize, units: usize) -> LaunchConfig {
    const WARPS: u32 = 4;
    let words = (n * units.div_ceil(64)) as u64;
    LaunchConfig::new(grid_for(words, u64::from(WARPS)), 32 * WARPS)
}

/// Sign codes of `n` images of `units` values (`codes`: `[n][ceil(units/64)]` u64); with
/// `y`, also `y = max(x, 0)` in the same pass.
pub fn pack_signs<L: Launcher>(
    l: &L,
    n: usize,
    units: usize,
    x: &L::Buf,
    y: Option<&mut L::Buf>,
    codes: &mut L::Buf,
) -> Result {
    check_act(l, x, n * units, "pack_signs x")?;
    check_len::<L, u64>(l, codes, n * units.div_ceil(64), "pack_signs codes")?;
    if n * units == 0 {
        return Ok(());
    }
    let (n_arg, units_arg) = (int(n)?, int(units)?);
    let config = code_launch(n, units);
    match y {
        Some(y) => {
            check_act(l, y, n * units, "relu_forward_pack y")?;
            let args = &mut [
                Arg::Buf(x),
                Arg::BufMut(y),
                Arg::BufMut(codes),
                Arg::I32(n_arg),
                Arg::I32(units_arg),
            ];
            // SAFETY: x, y hold n*units f32, codes n*words u64 (checked).
            unsafe { l.launch("relu_forward_pack", config, args) }
        }
        None => {
            let args = &mut [
                Arg::Buf(x),
                Arg::BufMut(codes),
                Arg::I32(n_arg),
                Arg::I32(units_arg),
            ];
            // SAFETY: as above.
            unsafe { l.launch("pack_signs", config, args) }
        }
    }
}

/// `k[i][j] += weight * (units - hamming(code_i, code_j))`, `k` is `[n][n]` u64.
pub fn hamming_gram_accumulate<L: Launcher>(
    l: &L,
    n: usize,
    units: usize,
    weight: u64,
    codes: &L::Buf,
    k: &mut L::Buf,
) -> Result {
    let words = units.div_ceil(64);
    check_len::<L, u64>(l, codes, n * words, "hamming codes")?;
    check_len::<L, u64>(l, k, n * n, "hamming k")?;
    if n == 0 {
        return Ok(());
    }
    let t = tiles(n)?;
    let config = LaunchConfig::new((t, t), (TILE, TILE));
    let args = &mut [
        Arg::Buf(codes),
        Arg::BufMut(k),
        Arg::I32(int(n)?),
        Arg::I32(int(words)?),
        Arg::U64(units as u64),
        Arg::U64(weight),
    ];
    // SAFETY: codes hold n*words u64, k n*n (checked); the kernel guards rows/cols >= n.
    unsafe { l.launch("hamming_gram_accumulate", config, args) }
}

/// `g += a a^T` for `a = [n][len]` f32, `g = [n][n]` f64.
pub fn gram_accumulate<L: Launcher>(
    l: &L,
    n: usize,
    len: usize,
    a: &L::Buf,
    g: &mut L::Buf,
) -> Result {
    check_len::<L, f32>(l, a, n * len, "gram a")?;
    check_len::<L, f64>(l, g, n * n, "gram g")?;
    if n == 0 || len == 0 {
        return Ok(());
    }
    let t = tiles(n)?;
    // Split the columns so that small n still gives enough blocks, each block keeping at
    // least 32 chunks of work; at most 64 splits (n = 64: 1,024 blocks), which bounds the
    // f64 partial sums to 64 n^2 (2 MiB at n = 64).
    let chunks = len.div_ceil(TILE as usize);
    let splits = chunks.div_ceil(32).clamp(1, 64) as u32;
    let config = LaunchConfig::new((t, t, splits), (TILE, TILE));
    let mut part = l.scratch::<f64>(splits as usize * n * n)?;
    let args = &mut [
        Arg::Buf(a),
        Arg::BufMut(&mut *part),
        Arg::I32(int(n)?),
        Arg::I64(long(len)?),
    ];
    // SAFETY: a holds n*len f32 (checked), part splits*n*n f64.
    unsafe { l.launch("gram_partial", config, args)? };
    let args = &mut [
        Arg::Buf(&*part),
        Arg::BufMut(g),
        Arg::I32(i32::try_from(splits).map_err(|_| LaunchError::SizeOverflow(splits as usize))?),
        Arg::I64(long(n * n)?),
    ];
    // SAFETY: part holds splits*n*n f64, g n*n (checked).
    unsafe { l.launch("gram_sum_partials", elementwise(n * n), args) }
}

/// `out[at + j]` = mean |a[i][j]|, `out[at + len + j]` = the population variance of column
/// j of `a = [n][len]` (f64, overwritten; the rest of `out` kept).
pub fn column_moments<L: Launcher>(
    l: &L,
    n: usize,
    len: usize,
    a: &L::Buf,
    out: &mut L::Buf,
    at: usize,
) -> Result {
    check_len::<L, f32>(l, a, n * len, "column_moments a")?;
    check_acc_slots(l, out, at, 2 * len, "column_moments out")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(a),
        Arg::BufMut(out),
        Arg::I32(int(n)?),
        Arg::I64(long(len)?),
        Arg::I64(long(at)?),
    ];
    // SAFETY: a holds n*len f32, out at least at + 2*len f64 (checked).
    unsafe { l.launch("column_moments", elementwise(len), args) }
}

/// `out = float(x + alpha * y)` over `len` f32 values, in f64 (kernels/elementwise.cu).
pub fn add_scaled<L: Launcher>(
    l: &L,
    len: usize,
    (x, alpha, y): (&L::Buf, f64, &L::Buf),
    out: &mut L::Buf,
) -> Result {
    check_len::<L, f32>(l, x, len, "add_scaled x")?;
    check_len::<L, f32>(l, y, len, "add_scaled y")?;
    check_len::<L, f32>(l, out, len, "add_scaled out")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(x),
        Arg::F64(alpha),
        Arg::Buf(y),
        Arg::BufMut(out),
        Arg::I64(long(len)?),
    ];
    // SAFETY: x, y and out hold len f32 (checked).
    unsafe { l.launch("add_scaled", elementwise(len), args) }
}

/// `out[at] += sum x * (a - b)` over `len` f32 values (f64 `out`).
pub fn difference_dot<L: Launcher>(
    l: &L,
    len: usize,
    (x, a, b): (&L::Buf, &L::Buf, &L::Buf),
    out: &mut L::Buf,
    at: usize,
) -> Result {
    for (buf, what) in [
        (x, "difference_dot x"),
        (a, "difference_dot a"),
        (b, "difference_dot b"),
    ] {
        check_len::<L, f32>(l, buf, len, what)?;
    }
    check_acc_slots(l, out, at, 1, "difference_dot out")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(x),
        Arg::Buf(a),
        Arg::Buf(b),
        Arg::I64(long(len)?),
        Arg::BufMut(out),
        Arg::I32(int(at)?),
    ];
    // SAFETY: x, a and b hold len f32, out at least at + 1 f64 (checked).
    unsafe { l.launch("difference_dot", LaunchConfig::new(1, REDUCE_BLOCK), args) }
}

/// `out[at] += sum |a * b|`, `out[at + 1] += sum b^2` over `len` f32 values (f64 `out`).
pub fn abs_products_and_squares<L: Launcher>(
    l: &L,
    len: usize,
    a: &L::Buf,
    b: &L::Buf,
    out: &mut L::Buf,
    at: usize,
) -> Result {
    check_len::<L, f32>(l, a, len, "abs_products_and_squares a")?;
    check_len::<L, f32>(l, b, len, "abs_products_and_squares b")?;
    check_acc_slots(l, out, at, 2, "abs_products_and_squares out")?;
    if len == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(a),
        Arg::Buf(b),
        Arg::I64(long(len)?),
        Arg::BufMut(out),
        Arg::I32(int(at)?),
    ];
    // SAFETY: a and b hold len f32, out at least at + 2 f64 (checked).
    unsafe {
        l.launch(
            "abs_products_and_squares",
            LaunchConfig::new(1, REDUCE_BLOCK),
            args,
        )
    }
}

/// `out[at] += sum_r (sum_p a[r][p] * b[r][p])^2` for activations `a, b = [rows][len]`.
pub fn row_dot_squares<L: Launcher>(
    l: &L,
    (rows, len): (usize, usize),
    a: &L::Buf,
    b: &L::Buf,
    out: &mut L::Buf,
    at: usize,
) -> Result {
    check_act(l, a, rows * len, "row_dot_squares a")?;
    check_act(l, b, rows * len, "row_dot_squares b")?;
    check_acc_slots(l, out, at, 1, "row_dot_squares out")?;
    if rows == 0 || len == 0 {
        return Ok(());
    }
    let mut dots = l.scratch::<f64>(rows)?;
    let warps_per_block = u64::from(ELEMENTWISE_BLOCK / 32);
    let config = LaunchConfig::new(grid_for(rows as u64, warps_per_block), ELEMENTWISE_BLOCK);
    let args = &mut [
        Arg::Buf(a),
        Arg::Buf(b),
        Arg::I64(long(rows)?),
        Arg::I32(int(len)?),
        Arg::BufMut(&mut *dots),
    ];
    // SAFETY: a and b hold rows*len activations (checked), dots rows f64.
    unsafe { l.launch("row_dots", config, args)? };
    let args = &mut [
        Arg::Buf(&*dots),
        Arg::I64(long(rows)?),
        Arg::BufMut(out),
        Arg::I32(int(at)?),
    ];
    // SAFETY: dots holds rows f64, out at least at + 1 (checked).
    unsafe { l.launch("sum_squares", LaunchConfig::new(1, REDUCE_BLOCK), args) }
}

/// `out[at] += ` the number of `i` with `a[i] != b[i]` over activations of `len` values:
/// per-block counts into scratch, then one block adds them in order (exact: integers).
pub fn count_unequal<L: Launcher>(
    l: &L,
    len: usize,
    a: &L::Buf,
    b: &L::Buf,
    out: &mut L::Buf,
    at: usize,
) -> Result {
    check_act(l, a, len, "count_unequal a")?;
    check_act(l, b, len, "count_unequal b")?;
    check_acc_slots(l, out, at, 1, "count_unequal out")?;
    if len == 0 {
        return Ok(());
    }
    let config = LaunchConfig::new(
        grid_for(len as u64, u64::from(REDUCE_BLOCK) * 16).min(1024),
        REDUCE_BLOCK,
    );
    let blocks = config.grid.x as usize;
    let mut partial = l.scratch::<f64>(blocks)?;
    let args = &mut [
        Arg::Buf(a),
        Arg::Buf(b),
        Arg::I64(long(len)?),
        Arg::BufMut(&mut *partial),
    ];
    // SAFETY: a and b hold len activations (checked), partial one f64 per block.
    unsafe { l.launch("count_unequal", config, args)? };
    let args = &mut [
        Arg::Buf(&*partial),
        Arg::I64(long(blocks)?),
        Arg::BufMut(out),
        Arg::I32(int(at)?),
    ];
    // SAFETY: partial holds `blocks` f64, out at least at + 1 (checked).
    unsafe { l.launch("sum_into", LaunchConfig::new(1, REDUCE_BLOCK), args) }
}

/// Checks that activation buffer `buf` holds at least `n` images of `view`, and that the
/// extents the kernels index with an `int` fit one.
fn check_view<L: Launcher>(
    l: &L,
    buf: &L::Buf,
    view: ChannelView,
    n: usize,
    what: &str,
) -> Result<[i32; 4]> {
    let want = n * view.image_len();
    let held = l.byte_len(buf) / l.storage().value_bytes();
    if held < want {
        return Err(LaunchError::Length(format!(
            "{what}: {held} values, {n} images of {view:?} need {want}"
        )));
    }
    int(view.channels())?;
    Ok([int(view.c)?, int(view.h)?, int(view.w)?, int(view.s)?])
}

/// Per-channel sums and counts of values differing from each image's first
/// (kernels/channel.cu `channel_sums`), written at `at` of `out` (`2 * view.channels()`
/// f64).
pub fn channel_sums<L: Launcher>(
    l: &L,
    (a, view): (&L::Buf, ChannelView),
    n: usize,
    out: &mut L::Buf,
    at: usize,
) -> Result {
    let [c, h, w, s] = check_view(l, a, view, n, "channel_sums a")?;
    let channels = view.channels();
    check_acc_slots(l, out, at, 2 * channels, "channel_sums out")?;
    if channels == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(a),
        Arg::I32(int(n)?),
        Arg::I32(c),
        Arg::I32(h),
        Arg::I32(w),
        Arg::I32(s),
        Arg::BufMut(out),
        Arg::I64(long(at)?),
    ];
    // SAFETY: a holds at least n images of the view (checked), out 2 * channels f64 from at.
    unsafe { l.launch("channel_sums", per_block(channels), args) }
}

/// The tile edge of channel.cu (CHANNEL_TILE).
const CHANNEL_TILE: usize = 16;
/// channel_gram's split-K: each range at least this many chunks of CHANNEL_TILE columns,
/// and about this many blocks in all where the columns allow.
const CHANNEL_MIN_CHUNKS: usize = 16;
const CHANNEL_BLOCKS: usize = 1024;

/// The channel Gram of the first `n` images of activations `a` and `b` read through their
/// views (kernels/channel.cu), raw or `centred`, written at `at` of `out` (`Ca * Cb` f64):
/// split-K partial sums in scratch (at most about `CHANNEL_BLOCKS * 256` f64), added in
/// order. Centred, each map's channel sums come first (`channel_sums`, into scratch).
pub fn channel_gram<L: Launcher>(
    l: &L,
    (a, va): (&L::Buf, ChannelView),
    (b, vb): (&L::Buf, ChannelView),
    n: usize,
    centred: bool,
    out: &mut L::Buf,
    at: usize,
) -> Result {
    let [c_a, h_a, w_a, s_a] = check_view(l, a, va, n, "channel_gram a")?;
    let [c_b, h_b, w_b, s_b] = check_view(l, b, vb, n, "channel_gram b")?;
    if va.positions() != vb.positions() {
        return Err(LaunchError::Length(format!(
            "channel_gram: positions of {va:?} and {vb:?} differ"
        )));
    }
    let (ca, cb) = (va.channels(), vb.channels());
    let entries = ca * cb;
    check_acc_slots(l, out, at, entries, "channel_gram out")?;
    if entries == 0 {
        return Ok(());
    }
    let tiles = (ca.div_ceil(CHANNEL_TILE), cb.div_ceil(CHANNEL_TILE));
    let chunks = (n * va.positions()).div_ceil(CHANNEL_TILE);
    let splits = chunks
        .div_ceil(CHANNEL_MIN_CHUNKS)
        .min(CHANNEL_BLOCKS.div_ceil(tiles.0 * tiles.1))
        .max(1);
    let grid = (
        u32::try_from(tiles.1).map_err(|_| LaunchError::SizeOverflow(cb))?,
        u32::try_from(tiles.0).map_err(|_| LaunchError::SizeOverflow(ca))?,
        splits as u32,
    );
    let config = LaunchConfig::new(grid, (CHANNEL_TILE as u32, CHANNEL_TILE as u32));
    let mut part = l.scratch::<f64>(splits * entries)?;
    if centred {
        let same = std::ptr::eq(a, b) && va == vb;
        let mut sums_a = l.scratch::<f64>(2 * ca)?;
        channel_sums(l, (a, va), n, &mut sums_a, 0)?;
        let sums_b = if same {
            None
        } else {
            let mut sums = l.scratch::<f64>(2 * cb)?;
            channel_sums(l, (b, vb), n, &mut sums, 0)?;
            Some(sums)
        };
        let sums_b: &L::Buf = sums_b.as_deref().unwrap_or(&*sums_a);
        let args = &mut [
            Arg::Buf(a),
            Arg::I32(c_a),
            Arg::I32(h_a),
            Arg::I32(w_a),
            Arg::I32(s_a),
            Arg::Buf(b),
            Arg::I32(c_b),
            Arg::I32(h_b),
            Arg::I32(w_b),
            Arg::I32(s_b),
            Arg::Buf(&*sums_a),
            Arg::Buf(sums_b),
            Arg::BufMut(&mut *part),
            Arg::I32(int(n)?),
        ];
        // SAFETY: a, b hold at least n images of their views (checked), the sums 2 * Ca and
        // 2 * Cb f64 (their first halves are read), part splits * Ca * Cb f64.
        unsafe { l.launch("channel_gram_centred_partial", config, args)? };
    } else {
        let args = &mut [
            Arg::Buf(a),
            Arg::I32(c_a),
            Arg::I32(h_a),
            Arg::I32(w_a),
            Arg::I32(s_a),
            Arg::Buf(b),
            Arg::I32(c_b),
            Arg::I32(h_b),
            Arg::I32(w_b),
            Arg::I32(s_b),
            Arg::BufMut(&mut *part),
            Arg::I32(int(n)?),
        ];
        // SAFETY: as above, without the sums.
        unsafe { l.launch("channel_gram_partial", config, args)? };
    }
    let args = &mut [
        Arg::Buf(&*part),
        Arg::BufMut(out),
        Arg::I32(int(splits)?),
        Arg::I64(long(entries)?),
        Arg::I64(long(at)?),
    ];
    // SAFETY: part holds splits * entries f64, out at least at + entries (checked).
    unsafe { l.launch("channel_gram_sum", elementwise(entries), args) }
}

/// Checks that an f64 accumulator has `slots` values from `at` on.
fn check_acc_slots<L: Launcher>(
    l: &L,
    out: &L::Buf,
    at: usize,
    slots: usize,
    what: &str,
) -> Result {
    let held = l.byte_len(out) / std::mem::size_of::<f64>();
    if at.checked_add(slots).is_some_and(|end| end <= held) {
        Ok(())
    } else {
        Err(LaunchError::Length(format!(
            "{what}: {slots} values at {at} do not fit {held}"
        )))
    }
}

/// Shapes of the pooling kernels: `planes = n * c` planes of `h x w`.
fn planes(n: usize, c: usize) -> usize {
    n * c
}

fn pool<L: Launcher>(
    l: &L,
    kernel: &str,
    (n, c, h, w): (usize, usize, usize, usize),
    (src, src_len): (&L::Buf, usize),
    (dst, dst_len): (&mut L::Buf, usize),
    threads: usize,
    accumulate: Option<bool>,
) -> Result {
    check_act(l, src, src_len, kernel)?;
    check_act(l, dst, dst_len, kernel)?;
    if threads == 0 {
        // Nothing to add: an overwritten dst is zeros.
        return match accumulate {
            Some(false) if dst_len > 0 => l.zero(dst),
            _ => Ok(()),
        };
    }
    let mut args = vec![
        Arg::Buf(src),
        Arg::BufMut(dst),
        Arg::I64(long(planes(n, c))?),
        Arg::I32(int(h)?),
        Arg::I32(int(w)?),
    ];
    args.extend(accumulate.map(|a| Arg::I32(i32::from(a))));
    // SAFETY: src and dst lengths match the geometry (checked).
    unsafe { l.launch(kernel, elementwise(threads), &mut args) }
}

/// 3x3 average pool, stride 1, pad 1, padding excluded; `y` overwritten.
pub fn avgpool3x3_forward<L: Launcher>(
    l: &L,
    (n, c, h, w): (usize, usize, usize, usize),
    x: &L::Buf,
    y: &mut L::Buf,
) -> Result {
    let len = n * c * h * w;
    pool(
        l,
        "avgpool3x3_forward",
        (n, c, h, w),
        (x, len),
        (y, len),
        len,
        None,
    )
}

/// Backward of [`avgpool3x3_forward`]: `dx += ...`.
pub fn avgpool3x3_backward<L: Launcher>(
    l: &L,
    (n, c, h, w): (usize, usize, usize, usize),
    dy: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    let len = n * c * h * w;
    pool(
        l,
        "avgpool3x3_backward",
        (n, c, h, w),
        (dy, len),
        (dx, len),
        len,
        Some(accumulate),
    )
}

/// 2x2 average pool, stride 2; `y` (`[n][c][h/2][w/2]`) overwritten.
pub fn avgpool2x2_forward<L: Launcher>(
    l: &L,
    (n, c, h, w): (usize, usize, usize, usize),
    x: &L::Buf,
    y: &mut L::Buf,
) -> Result {
    let out = n * c * (h / 2) * (w / 2);
    pool(
        l,
        "avgpool2x2_forward",
        (n, c, h, w),
        (x, n * c * h * w),
        (y, out),
        out,
        None,
    )
}

/// Backward of [`avgpool2x2_forward`]: `dx += dy / 4` on each window.
pub fn avgpool2x2_backward<L: Launcher>(
    l: &L,
    (n, c, h, w): (usize, usize, usize, usize),
    dy: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    let len = n * c * h * w;
    let out = n * c * (h / 2) * (w / 2);
    let threads = if out == 0 { 0 } else { len };
    pool(
        l,
        "avgpool2x2_backward",
        (n, c, h, w),
        (dy, out),
        (dx, len),
        threads,
        Some(accumulate),
    )
}

/// `y[n][c]` = plane means of `x` (`[n][c][hw]`); overwritten.
pub fn global_avgpool_forward<L: Launcher>(
    l: &L,
    (n, c, hw): (usize, usize, usize),
    x: &L::Buf,
    y: &mut L::Buf,
) -> Result {
    check_act(l, x, n * c * hw, "global_avgpool_forward x")?;
    check_act(l, y, n * c, "global_avgpool_forward y")?;
    if n * c * hw == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(x),
        Arg::BufMut(y),
        Arg::I64(long(n * c)?),
        Arg::I32(int(hw)?),
    ];
    // SAFETY: lengths checked.
    unsafe { l.launch("global_avgpool_forward", per_block(n * c), args) }
}

/// `dx += dy / hw` over each plane.
pub fn global_avgpool_backward<L: Launcher>(
    l: &L,
    (n, c, hw): (usize, usize, usize),
    dy: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    check_act(l, dy, n * c, "global_avgpool_backward dy")?;
    check_act(l, dx, n * c * hw, "global_avgpool_backward dx")?;
    if n * c * hw == 0 {
        return Ok(());
    }
    let args = &mut [
        Arg::Buf(dy),
        Arg::BufMut(dx),
        Arg::I64(long(n * c)?),
        Arg::I32(int(hw)?),
        Arg::I32(i32::from(accumulate)),
    ];
    // SAFETY: lengths checked.
    unsafe { l.launch("global_avgpool_backward", elementwise(n * c * hw), args) }
}

fn bn_check(g: &BnGeom) -> Result {
    if g.group > 0 && g.n.is_multiple_of(g.group) && g.hw > 0 && g.c > 0 {
        Ok(())
    } else {
        Err(LaunchError::Length(format!(
            "invalid batch-norm geometry {g:?}"
        )))
    }
}

/// [`bn_check`] and the lengths of the backward's inputs: `x`, `dy` `[n][c][hw]`, `mean`,
/// `inv_std` one per (group, channel).
fn bn_check_backward<L: Launcher>(
    l: &L,
    g: &BnGeom,
    x: &L::Buf,
    mean: &L::Buf,
    inv_std: &L::Buf,
    dy: &L::Buf,
) -> Result {
    bn_check(g)?;
    let (len, pairs) = (g.n * g.c * g.hw, g.groups() * g.c);
    check_act(l, x, len, "bn x")?;
    check_act(l, dy, len, "bn dy")?;
    check_len::<L, f32>(l, mean, pairs, "bn mean")?;
    check_len::<L, f32>(l, inv_std, pairs, "bn inv_std")
}

/// Values summed by one block of the split batch-norm reductions (16 per thread).
const BN_RUN_VALUES: usize = 16 * REDUCE_BLOCK as usize;

/// Images per run and runs per (group, channel) pair of the split reductions: runs of about
/// `BN_RUN_VALUES` values, so that a layer with few channels still fills the device.
fn bn_runs(g: &BnGeom) -> (usize, usize) {
    let run = (BN_RUN_VALUES / g.hw).clamp(1, g.group);
    (run, g.group.div_ceil(run))
}

/// The (runs, pairs) grid of the `*_partial` kernels.
fn bn_partial_launch(pairs: usize, runs: usize) -> Result<LaunchConfig> {
    // A grid's y extent is at most 65535 (NB-201 needs at most 128 images x 64 channels).
    let y = u32::try_from(pairs)
        .ok()
        .filter(|&p| p <= 65_535)
        .ok_or(LaunchError::SizeOverflow(pairs))?;
    let x = u32::try_from(runs).map_err(|_| LaunchError::SizeOverflow(runs))?;
    Ok(LaunchConfig::new((x, y, 1), (REDUCE_BLOCK, 1, 1)))
}

/// The trailing `n, c, hw, group` arguments of the norm.cu kernels.
fn dims<'a, B>(g: &BnGeom) -> Result<[Arg<'a, B>; 4]> {
    Ok([
        Arg::I32(int(g.n)?),
        Arg::I32(int(g.c)?),
        Arg::I32(int(g.hw)?),
        Arg::I32(int(g.group)?),
    ])
}

/// Training-mode batch norm: statistics into `mean`, `inv_std` (`[groups][c]`), `y`
/// overwritten.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward<L: Launcher>(
    l: &L,
    g: &BnGeom,
    eps: f64,
    x: &L::Buf,
    gamma: &L::Buf,
    beta: &L::Buf,
    y: &mut L::Buf,
    mean: &mut L::Buf,
    inv_std: &mut L::Buf,
) -> Result {
    bn_check(g)?;
    let len = g.n * g.c * g.hw;
    check_act(l, x, len, "bn x")?;
    check_act(l, y, len, "bn y")?;
    check_len::<L, f32>(l, gamma, g.c, "bn gamma")?;
    check_len::<L, f32>(l, beta, g.c, "bn beta")?;
    check_len::<L, f32>(l, mean, g.groups() * g.c, "bn mean")?;
    check_len::<L, f32>(l, inv_std, g.groups() * g.c, "bn inv_std")?;
    let pairs = g.groups() * g.c;
    let (run, runs) = bn_runs(g);
    let mut partial = l.scratch::<f64>(2 * pairs * runs)?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![Arg::Buf(x), Arg::BufMut(&mut *partial)];
    args.extend(dims(g)?);
    args.push(Arg::I32(int(run)?));
    // SAFETY: lengths checked against the geometry; partial holds 2 * pairs * runs f64.
    unsafe {
        l.launch(
            "bn_stats_partial",
            bn_partial_launch(pairs, runs)?,
            &mut args,
        )?
    };
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(x),
        Arg::Buf(&*partial),
        Arg::BufMut(mean),
        Arg::BufMut(inv_std),
    ];
    args.extend(dims(g)?);
    args.push(Arg::I32(int(runs)?));
    args.push(Arg::F64(eps));
    // SAFETY: as above.
    unsafe { l.launch("bn_stats_finalize", elementwise(pairs), &mut args)? };
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(x),
        Arg::Buf(gamma),
        Arg::Buf(beta),
        Arg::Buf(mean),
        Arg::Buf(inv_std),
        Arg::BufMut(y),
    ];
    args.extend(dims(g)?);
    // SAFETY: as above.
    unsafe { l.launch("bn_apply", elementwise(len), &mut args) }
}

/// Batch-norm backward: `dgamma`, `dbeta` (`[c]`) accumulated (or, without
/// `accumulate_params`, overwritten with what adding to zeros gives) and, if given, `dx`
/// (with its own `accumulate`).
#[allow(clippy::too_many_arguments)]
pub fn bn_backward<L: Launcher>(
    l: &L,
    g: &BnGeom,
    mode: BnGrad,
    x: &L::Buf,
    gamma: &L::Buf,
    mean: &L::Buf,
    inv_std: &L::Buf,
    dy: &L::Buf,
    dx: Option<(&mut L::Buf, bool)>,
    dgamma: &mut L::Buf,
    dbeta: &mut L::Buf,
    accumulate_params: bool,
) -> Result {
    bn_check_backward(l, g, x, mean, inv_std, dy)?;
    check_len::<L, f32>(l, dgamma, g.c, "bn dgamma")?;
    check_len::<L, f32>(l, dbeta, g.c, "bn dbeta")?;
    let sums = bn_backward_sums(l, g, x, mean, inv_std, dy)?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(&*sums),
        Arg::BufMut(dgamma),
        Arg::BufMut(dbeta),
        Arg::I32(int(g.groups())?),
        Arg::I32(int(g.c)?),
        Arg::I32(i32::from(accumulate_params)),
    ];
    // SAFETY: sums holds 2 * groups * c f64, dgamma and dbeta c f32 (checked).
    unsafe { l.launch("bn_param_accumulate", elementwise(g.c), &mut args)? };
    match dx {
        Some((dx, accumulate)) => bn_backward_dx(
            l, g, mode, x, gamma, mean, inv_std, dy, &*sums, dx, accumulate,
        ),
        None => Ok(()),
    }
}

/// `dx +=` the input gradient of [`bn_backward`] alone: in `FrozenStats` mode without the
/// reduction kernels, which only the parameter gradients need.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward_data<L: Launcher>(
    l: &L,
    g: &BnGeom,
    mode: BnGrad,
    x: &L::Buf,
    gamma: &L::Buf,
    mean: &L::Buf,
    inv_std: &L::Buf,
    dy: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    bn_check_backward(l, g, x, mean, inv_std, dy)?;
    let sums = match mode {
        BnGrad::Full => bn_backward_sums(l, g, x, mean, inv_std, dy)?,
        // Not read by the kernel in this mode; one element for a valid pointer.
        BnGrad::FrozenStats => l.scratch::<f64>(1)?,
    };
    bn_backward_dx(
        l, g, mode, x, gamma, mean, inv_std, dy, &*sums, dx, accumulate,
    )
}

/// `(Sdy, Sdx)` per (group, channel) (`[2 * groups * c]` f64): partial sums over runs of
/// images, then one finalising pass. Inputs checked by [`bn_check_backward`].
fn bn_backward_sums<'l, L: Launcher>(
    l: &'l L,
    g: &BnGeom,
    x: &L::Buf,
    mean: &L::Buf,
    inv_std: &L::Buf,
    dy: &L::Buf,
) -> Result<Scratch<'l, L>> {
    let pairs = g.groups() * g.c;
    let (run, runs) = bn_runs(g);
    let mut partial = l.scratch::<f64>(2 * pairs * runs)?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(x),
        Arg::Buf(dy),
        Arg::Buf(mean),
        Arg::BufMut(&mut *partial),
    ];
    args.extend(dims(g)?);
    args.push(Arg::I32(int(run)?));
    // SAFETY: lengths checked; partial holds 2 * pairs * runs f64.
    unsafe {
        l.launch(
            "bn_backward_sums_partial",
            bn_partial_launch(pairs, runs)?,
            &mut args,
        )?
    };
    let mut sums = l.scratch::<f64>(2 * pairs)?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(&*partial),
        Arg::Buf(inv_std),
        Arg::BufMut(&mut *sums),
        Arg::I32(int(pairs)?),
        Arg::I32(int(runs)?),
    ];
    // SAFETY: partial holds 2 * pairs * runs f64, sums 2 * pairs, inv_std pairs (checked).
    unsafe { l.launch("bn_backward_sums_finalize", elementwise(pairs), &mut args)? };
    Ok(sums)
}

/// `dx +=` the input gradient; `sums` from [`bn_backward_sums`] (read in `Full` mode
/// only). Inputs checked by [`bn_check_backward`].
#[allow(clippy::too_many_arguments)]
fn bn_backward_dx<L: Launcher>(
    l: &L,
    g: &BnGeom,
    mode: BnGrad,
    x: &L::Buf,
    gamma: &L::Buf,
    mean: &L::Buf,
    inv_std: &L::Buf,
    dy: &L::Buf,
    sums: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    let len = g.n * g.c * g.hw;
    let pairs = g.groups() * g.c;
    check_act(l, dx, len, "bn dx")?;
    check_len::<L, f32>(l, gamma, g.c, "bn gamma")?;
    if mode == BnGrad::Full {
        check_len::<L, f64>(l, sums, 2 * pairs, "bn sums")?;
    }
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(x),
        Arg::Buf(dy),
        Arg::Buf(gamma),
        Arg::Buf(mean),
        Arg::Buf(inv_std),
        Arg::Buf(sums),
        Arg::BufMut(dx),
    ];
    args.extend(dims(g)?);
    args.push(Arg::I32(i32::from(mode == BnGrad::Full)));
    args.push(Arg::I32(i32::from(accumulate)));
    // SAFETY: lengths checked; the kernel reads sums only in Full mode.
    unsafe { l.launch("bn_backward_dx", elementwise(len), &mut args) }
}

/// Per-image FrozenStats parameter gradients `dgamma`, `dbeta` (`[n][c]`, overwritten).
#[allow(clippy::too_many_arguments)]
pub fn bn_param_grad_per_sample<L: Launcher>(
    l: &L,
    g: &BnGeom,
    x: &L::Buf,
    mean: &L::Buf,
    inv_std: &L::Buf,
    dy: &L::Buf,
    dgamma: &mut L::Buf,
    dbeta: &mut L::Buf,
) -> Result {
    bn_check_backward(l, g, x, mean, inv_std, dy)?;
    check_len::<L, f32>(l, dgamma, g.n * g.c, "bn dgamma")?;
    check_len::<L, f32>(l, dbeta, g.n * g.c, "bn dbeta")?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![
        Arg::Buf(x),
        Arg::Buf(dy),
        Arg::Buf(mean),
        Arg::Buf(inv_std),
        Arg::BufMut(dgamma),
        Arg::BufMut(dbeta),
    ];
    args.extend(dims(g)?);
    // SAFETY: lengths checked.
    unsafe { l.launch("bn_param_grad_per_sample", per_block(g.n * g.c), &mut args) }
}

/// Output tile of the GEMM kernels of conv.cu and linear.cu (CONV_TILE_M x CONV_TILE_N,
/// LINEAR_TILE_M x LINEAR_TILE_N), and their block of 16 x 16 threads.
const GEMM_TILE_M: usize = 32;
const GEMM_TILE_N: usize = 64;
const GEMM_BLOCK: (u32, u32) = (16, 16);
/// The reduction step of the GEMM kernels (CONV_TILE_K).
const GEMM_TILE_K: usize = 16;
/// The batched conv weight gradient is split over at most this many ranges of
/// (image, pixel) columns, each at least `CONV_MIN_SPAN` long, so that a layer with few
/// weight tiles still fills the device; the partial sums are added in order (deterministic).
const CONV_MAX_SPLITS: usize = 64;
const CONV_MIN_SPAN: usize = 8 * GEMM_TILE_K;

/// The launch of a GEMM kernel with an `m x n` output, `ranges` deep in z.
fn gemm_launch(m: usize, n: usize, ranges: usize) -> Result<LaunchConfig> {
    let tiles = |len: usize, tile: usize| {
        u32::try_from(len.div_ceil(tile)).map_err(|_| LaunchError::SizeOverflow(len))
    };
    let z = u32::try_from(ranges).map_err(|_| LaunchError::SizeOverflow(ranges))?;
    Ok(LaunchConfig::new(
        (tiles(n, GEMM_TILE_N)?, tiles(m, GEMM_TILE_M)?, z),
        GEMM_BLOCK,
    ))
}

fn conv_check(g: &ConvGeom) -> Result {
    if g.k >= 1 && g.stride >= 1 && g.h + 2 * g.pad >= g.k && g.w + 2 * g.pad >= g.k {
        Ok(())
    } else {
        Err(LaunchError::Length(format!("invalid conv geometry {g:?}")))
    }
}

/// The trailing `n, cin, height, width, cout, k, stride, pad` arguments of conv.cu, after
/// checking that every flat extent a kernel indexes with an `int` fits one.
fn conv_dims<'a, B>(g: &ConvGeom, n: usize) -> Result<[Arg<'a, B>; 8]> {
    int(n * g.out_h() * g.out_w())?;
    int(n * g.h * g.w)?;
    int(g.cout * g.cin * g.k * g.k)?;
    Ok([
        Arg::I32(int(n)?),
        Arg::I32(int(g.cin)?),
        Arg::I32(int(g.h)?),
        Arg::I32(int(g.w)?),
        Arg::I32(int(g.cout)?),
        Arg::I32(int(g.k)?),
        Arg::I32(int(g.stride)?),
        Arg::I32(int(g.pad)?),
    ])
}

/// `y = conv(x, w)`: `x` `[n][cin][h][w]`, `w` `[cout][cin][k][k]`, `y` `[n][cout][oh][ow]`
/// (overwritten).
pub fn conv_forward<L: Launcher>(
    l: &L,
    g: &ConvGeom,
    n: usize,
    x: &L::Buf,
    w: &L::Buf,
    y: &mut L::Buf,
) -> Result {
    conv_check(g)?;
    check_act(l, x, n * g.in_len(), "conv_forward x")?;
    check_len::<L, f32>(l, w, g.weight_len(), "conv_forward w")?;
    check_act(l, y, n * g.out_len(), "conv_forward y")?;
    if n * g.out_len() == 0 {
        return Ok(());
    }
    let columns = n * g.out_h() * g.out_w();
    // A layer of at most 16 output channels fills a 16-row tile (conv_forward_m16).
    let (kernel, config) = if g.cout <= 16 {
        let tiles = u32::try_from(columns.div_ceil(2 * GEMM_TILE_N))
            .map_err(|_| LaunchError::SizeOverflow(columns))?;
        (
            "conv_forward_m16",
            LaunchConfig::new((tiles, 1, 1), (GEMM_BLOCK.0, GEMM_BLOCK.1, 1)),
        )
    } else {
        ("conv_forward", gemm_launch(g.cout, columns, 1)?)
    };
    let mut args: Vec<Arg<'_, L::Buf>> = vec![Arg::Buf(x), Arg::Buf(w), Arg::BufMut(y)];
    args.extend(conv_dims(g, n)?);
    // SAFETY: lengths checked against the geometry; the kernel guards the ragged tiles.
    unsafe { l.launch(kernel, config, &mut args) }
}

/// `dx += conv^T(dy, w)`: `dy` `[n][cout][oh][ow]`, `dx` `[n][cin][h][w]`.
pub fn conv_backward_data<L: Launcher>(
    l: &L,
    g: &ConvGeom,
    n: usize,
    dy: &L::Buf,
    w: &L::Buf,
    dx: &mut L::Buf,
    accumulate: bool,
) -> Result {
    conv_check(g)?;
    check_act(l, dy, n * g.out_len(), "conv_backward_data dy")?;
    check_len::<L, f32>(l, w, g.weight_len(), "conv_backward_data w")?;
    check_act(l, dx, n * g.in_len(), "conv_backward_data dx")?;
    if n * g.in_len() == 0 {
        return Ok(());
    }
    let config = gemm_launch(g.cin, n * g.h * g.w, 1)?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![Arg::Buf(dy), Arg::Buf(w), Arg::BufMut(dx)];
    args.extend(conv_dims(g, n)?);
    args.push(Arg::I32(i32::from(accumulate)));
    // SAFETY: as in conv_forward.
    unsafe { l.launch("conv_backward_data", config, &mut args) }
}

/// `out[z] = ` the weight gradient over (image, pixel) columns `[z*span, (z+1)*span)`, for
/// `ranges` consecutive ranges; `out` holds `ranges * weight_len` f32.
#[allow(clippy::too_many_arguments)]
fn conv_weight_grad_ranges<L: Launcher>(
    l: &L,
    g: &ConvGeom,
    n: usize,
    x: &L::Buf,
    dy: &L::Buf,
    out: &mut L::Buf,
    span: usize,
    ranges: usize,
) -> Result {
    let config = gemm_launch(g.cout, g.cin * g.k * g.k, ranges)?;
    let mut args: Vec<Arg<'_, L::Buf>> = vec![Arg::Buf(x), Arg::Buf(dy), Arg::BufMut(out)];
    args.extend(conv_dims(g, n)?);
    args.push(Arg::I64(long(span)?));
    // SAFETY: x, dy checked by the callers against the geometry, out holds ranges *
    // weight_len f32 and ranges * span covers n * oh * ow (the kernel clips the last range).
    unsafe { l.launch("conv_weight_grad", config, &mut args) }
}

/// `dw += sum_n dy_n col(x_n)^T` (`dw` `[cout][cin*k*k]`): split-K partial sums in scratch,
/// added to `dw` in order; without `accumulate`, `dw` is overwritten with what adding to
/// zeros gives (its contents unspecified before).
pub fn conv_backward_weight<L: Launcher>(
    l: &L,
    g: &ConvGeom,
    n: usize,
    x: &L::Buf,
    dy: &L::Buf,
    dw: &mut L::Buf,
    accumulate: bool,
) -> Result {
    conv_check(g)?;
    check_act(l, x, n * g.in_len(), "conv_backward_weight x")?;
    check_act(l, dy, n * g.out_len(), "conv_backward_weight dy")?;
    check_len::<L, f32>(l, dw, g.weight_len(), "conv_backward_weight dw")?;
    let columns = n * g.out_h() * g.out_w();
    if g.weight_len() == 0 {
        return Ok(());
    }
    if columns == 0 {
        // Nothing to add: an overwritten dw is zeros.
        return if accumulate { Ok(()) } else { l.zero(dw) };
    }
    let span = columns
        .div_ceil(CONV_MAX_SPLITS)
        .max(CONV_MIN_SPAN)
        .next_multiple_of(GEMM_TILE_K);
    let splits = columns.div_ceil(span);
    let mut part = l.scratch::<f32>(splits * g.weight_len())?;
    conv_weight_grad_ranges(l, g, n, x, dy, &mut *part, span, splits)?;
    let len = g.weight_len();
    let args = &mut [
        Arg::Buf(&*part),
        Arg::BufMut(dw),
        Arg::I32(int(splits)?),
        Arg::I64(long(len)?),
        Arg::I32(i32::from(accumulate)),
    ];
    // SAFETY: part holds splits * len f32, dw len (checked).
    unsafe { l.launch("conv_sum_partials", elementwise(len), args) }
}

/// `out[i] = dy_i col(x_i)^T`, each image's weight gradient (`[n][weight_len]`, overwritten).
pub fn conv_weight_grad_per_sample<L: Launcher>(
    l: &L,
    g: &ConvGeom,
    n: usize,
    x: &L::Buf,
    dy: &L::Buf,
    out: &mut L::Buf,
) -> Result {
    conv_check(g)?;
    check_act(l, x, n * g.in_len(), "conv_weight_grad_per_sample x")?;
    check_act(l, dy, n * g.out_len(), "conv_weight_grad_per_sample dy")?;
    check_len::<L, f32>(
        l,
        out,
        n * g.weight_len(),
        "conv_weight_grad_per_sample out",
    )?;
    if n * g.weight_len() == 0 {
        return Ok(());
    }
    // One range per image: span = the pixels of one image.
    conv_weight_grad_ranges(l, g, n, x, dy, out, g.out_h() * g.out_w(), n)
}

/// Checks the `[n][fin]`, `[fout][fin]`, `[n][fout]` lengths of a linear layer.
fn linear_check<L: Launcher>(
    l: &L,
    (n, fin, fout): (usize, usize, usize),
    x: Option<&L::Buf>,
    w: Option<&L::Buf>,
    y: &L::Buf,
    op: &str,
) -> Result {
    if let Some(x) = x {
        check_act(l, x, n * fin, &format!("{op} x"))?;
    }
    if let Some(w) = w {
        check_len::<L, f32>(l, w, fout * fin, &format!("{op} w"))?;
    }
    check_act(l, y, n * fout, &format!("{op} y/dy"))
}

fn linear_dims<'a, B>(n: usize, fin: usize, fout: usize) -> Result<[Arg<'a, B>; 3]> {
    Ok([Arg::I32(int(n)?), Arg::I32(int(fin)?), Arg::I32(int(fout)?)])
}

/// `y = x w^T + b` (`x` `[n][fin]`, `w` `[fout][fin]`, `b` `[fout]`, `y` `[n][fout]`
/// overwritten).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward<L: Launcher>(
    l: &L,
    n: usize,
    fin: usize,
    fout: usize,
    x: &L::Buf,
    w: &L::Buf,
    b: &L::Buf,
    y: &mut L::Buf,
) -> Result {
    linear_check(l, (n, fin, fout), Some(x), Some(w), y, "linear_forward")?;
    check_len::<L, f32>(l, b, fout, "linear_forward b")?;
    if n * fout == 0 {
        return Ok(());
    }
    let mut args: Vec<Arg<'_, L::Buf>> =
        vec![Arg::Buf(x), Arg::Buf(w), Arg::Buf(b), Arg::BufMut(y)];
    args.extend(linear_dims(n, fin, fout)?);
    // SAFETY: lengths checked.
    unsafe { l.launch("linear_forward", gemm_launch(n, fout, 1)?, &mut args) }
}

/// `dx += dy w` (if `dx` is given), `dw += dy^T x`, `db += sum_n dy`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<L: Launcher>(
    l: &L,
    n: usize,
    fin: usize,
    fout: usize,
    x: &L::Buf,
    w: &L::Buf,
    dy: &L::Buf,
    dx: Option<&mut L::Buf>,
    dw: &mut L::Buf,
    db: &mut L::Buf,
) -> Result {
    linear_check(l, (n, fin, fout), Some(x), Some(w), dy, "linear_backward")?;
    check_len::<L, f32>(l, dw, fout * fin, "linear_backward dw")?;
    check_len::<L, f32>(l, db, fout, "linear_backward db")?;
    if let Some(dx) = &dx {
        check_act(l, dx, n * fin, "linear_backward dx")?;
    }
    if n == 0 || fout == 0 {
        return Ok(());
    }
    if let Some(dx) = dx {
        if fin > 0 {
            let mut args: Vec<Arg<'_, L::Buf>> = vec![Arg::Buf(dy), Arg::Buf(w), Arg::BufMut(dx)];
            args.extend(linear_dims(n, fin, fout)?);
            // SAFETY: lengths checked.
            unsafe { l.launch("linear_backward_data", gemm_launch(n, fin, 1)?, &mut args)? };
        }
    }
    if fin > 0 {
        let mut args: Vec<Arg<'_, L::Buf>> = vec![Arg::Buf(x), Arg::Buf(dy), Arg::BufMut(dw)];
        args.extend(linear_dims(n, fin, fout)?);
        // SAFETY: lengths checked.
        unsafe {
            l.launch(
                "linear_backward_weight",
                gemm_launch(fout, fin, 1)?,
                &mut args,
            )?
        };
    }
    let args = &mut [
        Arg::Buf(dy),
        Arg::BufMut(db),
        Arg::I32(int(n)?),
        Arg::I32(int(fout)?),
    ];
    // SAFETY: lengths checked.
    unsafe { l.launch("linear_backward_bias", elementwise(fout), args) }
}

/// Per-image `dw[i] = dy_i x_i^T` (`[n][fout*fin]`) and `db[i] = dy_i` (`[n][fout]`),
/// overwritten.
#[allow(clippy::too_many_arguments)]
pub fn linear_grad_per_sample<L: Launcher>(
    l: &L,
    n: usize,
    fin: usize,
    fout: usize,
    x: &L::Buf,
    dy: &L::Buf,
    dw: &mut L::Buf,
    db: &mut L::Buf,
) -> Result {
    linear_check(
        l,
        (n, fin, fout),
        Some(x),
        None,
        dy,
        "linear_grad_per_sample",
    )?;
    check_len::<L, f32>(l, dw, n * fout * fin, "linear_grad_per_sample dw")?;
    check_len::<L, f32>(l, db, n * fout, "linear_grad_per_sample db")?;
    if n * fout == 0 {
        return Ok(());
    }
    long(n * fout * fin)?;
    let mut args: Vec<Arg<'_, L::Buf>> =
        vec![Arg::Buf(x), Arg::Buf(dy), Arg::BufMut(dw), Arg::BufMut(db)];
    args.extend(linear_dims(n, fin, fout)?);
    // SAFETY: lengths checked.
    let config = elementwise(n * fout * fin.max(1));
    unsafe { l.launch("linear_grad_per_sample", config, &mut args) }
}

/// Softmax cross-entropy of `logits` (`[n][classes]`) against `labels` (each `< classes`):
/// overwrites `dlogits` with the gradient of the reduced loss and returns that loss.
///
/// The kernel writes each image's loss in f64; they are downloaded and summed here, in
/// order, in f64: n values are a negligible transfer next to the synchronisation a returned
/// scalar needs anyway, and the ordered sum is deterministic and is the CPU backend's.
pub fn softmax_cross_entropy<L: Launcher>(
    l: &L,
    n: usize,
    classes: usize,
    logits: &L::Buf,
    labels: &[usize],
    reduction: Reduction,
    dlogits: &mut L::Buf,
) -> Result<f32> {
    check_act(l, logits, n * classes, "softmax_cross_entropy logits")?;
    check_act(l, dlogits, n * classes, "softmax_cross_entropy dlogits")?;
    if labels.len() != n {
        return Err(LaunchError::Length(format!(
            "softmax_cross_entropy labels: {} for {n} images",
            labels.len()
        )));
    }
    if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &y)| y >= classes) {
        return Err(LaunchError::BadArgs {
            kernel: "softmax_cross_entropy".into(),
            detail: format!("label {label} of image {i} is not below {classes} classes"),
        });
    }
    if n == 0 {
        return Ok(0.0);
    }
    let scale = match reduction {
        Reduction::Mean => 1.0 / n as f64,
        Reduction::Sum => 1.0,
    };
    let labels: Vec<i32> = labels.iter().map(|&y| int(y)).collect::<Result<_>>()?;
    let labels = l.upload(&labels)?;
    let mut losses = l.scratch::<f64>(n)?;
    const WARPS: u32 = 4;
    let config = LaunchConfig::new(grid_for(n as u64, u64::from(WARPS)), 32 * WARPS);
    let args = &mut [
        Arg::Buf(logits),
        Arg::Buf(&labels),
        Arg::BufMut(dlogits),
        Arg::BufMut(&mut *losses),
        Arg::I32(int(n)?),
        Arg::I32(int(classes)?),
        Arg::F64(scale),
    ];
    // SAFETY: logits, dlogits hold n*classes f32, labels n i32 below classes, losses n f64.
    unsafe { l.launch("softmax_cross_entropy", config, args)? };
    let total: f64 = l.download::<f64>(&*losses)?.iter().sum();
    Ok((total * scale) as f32)
}
