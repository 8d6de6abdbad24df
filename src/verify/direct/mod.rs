//! Step 4: driving REWRITTEN's decoder with crafted heads.
//!
//! Real models rarely produce exact ties, huge values or `-inf`, yet a decoder must handle them.
//! So REWRITTEN is cut at the heads: a model whose inputs are the heatmaps and offsets tensors
//! and whose nodes are those that compute the keypoints output from them and from initializers.
//! If that walk back reaches any other graph input, the decoder depends on more than the heads
//! and the direct checks are skipped (with a note). The crafted heads go to the cut model and to
//! the reference decoder alike.

mod crafted;
mod cut;

pub(crate) use crafted::{crafted_cases, crafted_multi_pose_cases, Case, MultiPoseCase, MultiPoseGrid};
pub(crate) use cut::{cut, cut_single_pose, Uncut};
