//! The `oxipp` executable. Everything lives in the library so that the Python package
//! (`python -m oxipp`, through `oxipp._oxipp.main`) runs exactly the same code.

/// The controller allocates and frees small JSON values and frames for every message;
/// mimalloc halves that cost compared with glibc malloc (measured with the controller's
/// `core_throughput` example).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(oxipp_cluster::cli_main(std::env::args().collect()));
}
