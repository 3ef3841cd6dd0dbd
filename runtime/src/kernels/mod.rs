//! The kernel library, written in the DSL. Each kernel registers itself with a self-test that
//! runs it on fresh random inputs against an f64 reference written from the definition.

pub mod attention;
pub mod attention_bwd;
pub mod attention_decode;
pub mod attention_wg;
pub mod check;
pub mod gemm;
pub mod gemm_wg;
pub mod gemm_ws_wg;
pub mod linear_ce;
pub mod loss;
pub mod moe;
pub mod moe_bwd;
pub mod moe_fp8;
pub mod moe_gemm;
pub mod moe_gemm_wg;
pub mod moe_routing;
pub mod muon;
pub mod optim;
pub mod optim8;
pub mod optim_family;
pub mod optim_multi;
pub mod params;
pub mod shampoo;
pub mod softmax;
pub mod ws_gemm;
