//! The `nasrank` command line.

fn main() {
    println!("nasrank {}", env!("CARGO_PKG_VERSION"));
}
