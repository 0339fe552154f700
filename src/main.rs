//! The `wicket` command-line interface.

fn main() {
    println!("wicket");
}
