//! The multi-pose decoder where the target runs Gather, GatherElements, TopK and Where right
//! ([`Forms::ArgMaxGather`](crate::decoders::Forms), opset 11 and later): every candidate root's
//! whole pose is decoded once per frame, before the rounds, so that a round is only "take the
//! best live candidate, read its pose, suppress what it covers": about 90 nodes for the frame and
//! the outputs, and 8 a round (2 for the last), where the thin form takes about 280 a round
//! (`docs/multi-pose-decoder.md`, "The Gather form").
//!
//! Why the frame can decode every root at once: in the reference every decoded keypoint's
//! position is `P_j(c) = c * stride + offsets_j(c)` for one cell c (the root's is its own cell,
//! a traversed one's its second refinement's cell), so an edge's step is a table from cells to
//! cells. With `n_j(c)` the cell of `P_j(c)`, the step along directed edge `s -> t` from source
//! cell a is `F(a) = n_t(cell(P_s(a) + displacement(n_s(a))))`: the displacement read at the
//! source position's cell, the first refinement's cell, whose refined position's cell is the
//! target's cell. A pose from root `(k0, a)` then holds keypoint j at `F_path(a)`, the tables of
//! the path from k0 to j composed: for all 289 (root keypoint, keypoint) pairs and every cell at
//! once, one Gather and one GatherElements per level of the chain's tree (its longest path has 8
//! edges). The keypoint's score is read at the cell of its position, `n_j`, the root's at its
//! own cell, as the reference reads them.
//!
//! Layouts: `A = H*W` cells in row-major order, candidates `M = A * 17` in the reference's scan
//! order `(y, x, k)`. Cell indices are f32 until they index (exact integers below 2^24), then
//! int64. The candidates' priority is the clamped heatmap where a candidate is live and -inf
//! elsewhere; TopK with k = 1 takes the first of equal maxima (the ONNX spec; onnxruntime's and
//! tract's TopK both keep the lower index), so ties go in scan order as in the reference. A
//! round with nothing live reads -inf: its slot is written empty (-1, zeros) at the end. The
//! pose scores need only the poses, so they are computed once after the rounds, every pose
//! against every earlier one.
//!
//! Out of the contract, as for the thin form: NaN or infinite offsets or displacements (a NaN
//! cell reads as cell 0 here), and NaN heatmaps (a NaN passes the threshold test `!(v < T)`).

use crate::contract::{NUM_KEYPOINTS, POSE_CHAIN};
use crate::decoders::graph::{Cells, GraphBuilder};
use crate::model::proto;

use super::{decision_threshold, heads_nchw, local_max_window, scores_of, MultiPoseSpec};

const K: usize = NUM_KEYPOINTS;
const EDGES: usize = POSE_CHAIN.len();
/// (root keypoint, keypoint) pairs, `k0 * 17 + j`.
const PAIRS: usize = K * K;
/// The row of the identity table in the directed edges' tables (after the 2 * 16 edges).
const IDENTITY_ROW: usize = 2 * EDGES;

/// How the reference decodes keypoint j for root keypoint k0: by which directed edge (a row of
/// the edge tables: edge e backward is row e, forward row 16 + e; the root itself the identity
/// row) and from which pair (its source keypoint's, the root pair for the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    row: usize,
    from_pair: usize,
}

/// The reference's traversal replayed for every root keypoint (its passes: backward over edges
/// 15..0, then forward over 0..15, each edge when its source is known and its target is not),
/// and the levels needed: the largest number of steps from a root to a keypoint.
fn traversal() -> ([Step; PAIRS], usize) {
    let mut steps = [Step { row: IDENTITY_ROW, from_pair: 0 }; PAIRS];
    let mut deepest = 0;
    for k0 in 0..K {
        let mut depth: [Option<usize>; K] = [None; K];
        depth[k0] = Some(0);
        steps[k0 * K + k0] = Step { row: IDENTITY_ROW, from_pair: k0 * K + k0 };
        let mut decode = |row: usize, source: usize, target: usize, depth: &mut [Option<usize>; K]| {
            if let (Some(d), None) = (depth[source], depth[target]) {
                depth[target] = Some(d + 1);
                steps[k0 * K + target] = Step { row, from_pair: k0 * K + source };
            }
        };
        for (e, &(parent, child)) in POSE_CHAIN.iter().enumerate().rev() {
            decode(e, child, parent, &mut depth);
        }
        for (e, &(parent, child)) in POSE_CHAIN.iter().enumerate() {
            decode(EDGES + e, parent, child, &mut depth);
        }
        deepest = deepest.max(depth.iter().map(|d| d.expect("the chain spans every keypoint")).max().unwrap_or(0));
    }
    (steps, deepest)
}

/// Each directed edge's (source, target) keypoints, by row.
fn directed_edges() -> [(usize, usize); 2 * EDGES] {
    std::array::from_fn(|row| {
        let (parent, child) = POSE_CHAIN[row % EDGES];
        if row < EDGES {
            (child, parent)
        } else {
            (parent, child)
        }
    })
}

struct Builder<'a> {
    b: &'a mut GraphBuilder,
    h: usize,
    w: usize,
    stride: f32,
}

impl Builder<'_> {
    fn indices(&mut self, hint: &str, values: &[usize]) -> String {
        let values: Vec<i64> = values.iter().map(|&v| v as i64).collect();
        self.b.const_i64(hint, &[values.len() as i64], &values)
    }

    /// Rows `rows` of `x` (axis 1), by a Gather with constant indices.
    fn rows(&mut self, hint: &str, x: &str, rows: &[usize]) -> String {
        let rows = self.indices(&format!("{hint}_rows"), rows);
        self.b.op("Gather", hint, &[x, &rows], vec![proto::attr_int("axis", 1)])
    }

    fn gather_elements(&mut self, hint: &str, data: &str, at: &str, axis: i64) -> String {
        self.b.op("GatherElements", hint, &[data, at], vec![proto::attr_int("axis", axis)])
    }

    /// The cells of positions `p` (`[B, R, A]`, rows of y or x as `is_y` says), as the
    /// reference's `cell`: `clamp(floor(p / stride + 0.5), 0, size - 1)`, a true division.
    fn cell(&mut self, hint: &str, p: &str, is_y: &[bool]) -> String {
        let stride = self.b.scalar_f32("stride", self.stride, 1);
        let q = self.b.op("Div", &format!("{hint}_q"), &[p, &stride], vec![]);
        let half = self.b.scalar_f32("half", 0.5, 1);
        let q = self.b.op("Add", &format!("{hint}_q_half"), &[&q, &half], vec![]);
        let c = self.b.op("Floor", &format!("{hint}_floor"), &[&q], vec![]);
        let zero = self.b.scalar_f32("zero", 0.0, 1);
        let c = self.b.op("Max", &format!("{hint}_from_0"), &[&c, &zero], vec![]);
        let last: Vec<f32> = is_y.iter().map(|&y| (if y { self.h } else { self.w } - 1) as f32).collect();
        let last = self.b.const_f32(&format!("{hint}_last"), &[1, last.len() as i64, 1], &last);
        self.b.op("Min", hint, &[&c, &last], vec![])
    }

    /// Flat int64 cell indices `cy * W + cx` from cells `[B, R, A]`: output row o takes rows
    /// `pairs[o] = (y row, x row)`, by a MatMul against a constant (exact: integers below 2^24).
    fn flat(&mut self, hint: &str, c: &str, inputs: usize, pairs: &[(usize, usize)]) -> String {
        let mut weights = vec![0.0f32; pairs.len() * inputs];
        for (o, &(y, x)) in pairs.iter().enumerate() {
            weights[o * inputs + y] = self.w as f32;
            weights[o * inputs + x] = 1.0;
        }
        let weights = self.b.const_f32(&format!("{hint}_weights"), &[pairs.len() as i64, inputs as i64], &weights);
        let flat = self.b.op("MatMul", &format!("{hint}_f32"), &[&weights, c], vec![]);
        let int64 = onnx_protobuf::tensor_proto::DataType::INT64 as i64;
        self.b.op("Cast", hint, &[&flat], vec![proto::attr_int("to", int64)])
    }

}

/// Appends the Gather-form decoder for `spec` (its grid and N already checked).
pub(super) fn build(b: &mut GraphBuilder, spec: &MultiPoseSpec) {
    let (h, w) = spec.grid;
    let mut g = Builder { b, h, w, stride: spec.stride as f32 };
    let a = (h * w) as i64;
    let m = a * K as i64;
    let n = spec.params.max_poses;
    let k = K as i64;

    let [heatmaps, offsets, fwd, bwd] = heads_nchw(g.b, spec);
    // The maps the single-pose decoder makes too (the builder shares equal nodes).
    let v = g.b.clamp_finite("mp_heatmaps_finite", &heatmaps);
    let scores = scores_of(g.b, spec, &heatmaps, &v);
    let grid = Cells { height: h, width: w };
    let maps = g.b.cell_maps(&v, K, grid);
    let positions = g.b.cell_positions("mp_positions", &offsets, &maps, spec.stride);

    // Every keypoint's position at every cell, [B, 34, A] (y rows, then x rows), and the flat
    // index of its cell, n: [B, 17, A].
    let p = g.b.reshape("mp_positions_flat", &positions, &[-1, 2 * k, a]);
    let is_y: Vec<bool> = (0..2 * K).map(|r| r < K).collect();
    let position_cells = g.cell("mp_position_cells", &p, &is_y);
    let by_keypoint: Vec<(usize, usize)> = (0..K).map(|j| (j, K + j)).collect();
    let n_cell = g.flat("mp_position_index", &position_cells, 2 * K, &by_keypoint);

    // Every directed edge's step from every cell, F: [B, 32, A], as the module doc derives it.
    let edges = directed_edges();
    let disp = g.b.op("Concat", "mp_displacements", &[&bwd, &fwd], vec![proto::attr_int("axis", 1)]);
    let disp = g.b.reshape("mp_displacements_flat", &disp, &[-1, 4 * EDGES as i64, a]);
    // Displacement rows: backward y (edge e), backward x, forward y, forward x.
    let row_edge = |r: usize| (r / (2 * EDGES)) * EDGES + r % EDGES;
    let sources: Vec<usize> = (0..4 * EDGES).map(|r| edges[row_edge(r)].0).collect();
    let source_cells = g.rows("mp_edge_source_cells", &n_cell, &sources);
    let step = g.gather_elements("mp_edge_displacement", &disp, &source_cells, 2);
    let is_y_row = |r: usize| r % (2 * EDGES) < EDGES;
    let source_rows: Vec<usize> = (0..4 * EDGES).map(|r| sources[r] + if is_y_row(r) { 0 } else { K }).collect();
    let source_positions = g.rows("mp_edge_source_positions", &p, &source_rows);
    let displaced = g.b.op("Add", "mp_edge_displaced", &[&source_positions, &step], vec![]);
    let is_y: Vec<bool> = (0..4 * EDGES).map(is_y_row).collect();
    let first_cells = g.cell("mp_edge_first_cells", &displaced, &is_y);
    let by_edge: Vec<(usize, usize)> =
        (0..2 * EDGES).map(|d| ((d / EDGES) * 2 * EDGES + d % EDGES, (d / EDGES) * 2 * EDGES + EDGES + d % EDGES)).collect();
    let first_index = g.flat("mp_edge_first_index", &first_cells, 4 * EDGES, &by_edge);
    let targets: Vec<usize> = edges.iter().map(|e| e.1).collect();
    let target_cells = g.rows("mp_edge_target_cells", &n_cell, &targets);
    let step_table = g.gather_elements("mp_edge_step", &target_cells, &first_index, 2);

    // The identity table (row 32): every cell its own, [B, 32, A] (only its first row is read).
    let iota: Vec<i64> = (0..a).collect();
    let iota = g.b.const_i64("mp_cell_number", &[1, 1, a], &iota);
    let like = g.b.op("Shape", "mp_edge_step_shape", &[&step_table], vec![]);
    let identity = g.b.op("Expand", "mp_identity", &[&iota, &like], vec![]);
    let tables =
        g.b.op("Concat", "mp_edge_tables", &[&step_table, &identity], vec![proto::attr_int("axis", 1)]);

    // Every pair's cell for every root cell, [B, 289, A]: level 1 is each pair's own table
    // (the root's cells are the identity), each further level reads a pair's table at its
    // source pair's cell.
    let (steps, levels) = traversal();
    let rows: Vec<usize> = steps.iter().map(|s| s.row).collect();
    let pair_tables = g.rows("mp_pair_tables", &tables, &rows);
    let from: Vec<usize> = steps.iter().map(|s| s.from_pair).collect();
    let mut pair_cells = pair_tables.clone();
    for level in 2..=levels {
        let source = g.rows(&format!("mp_level{level}_source_cells"), &pair_cells, &from);
        pair_cells = g.gather_elements(&format!("mp_level{level}_cells"), &pair_tables, &source, 2);
    }

    // Every candidate root's pose: positions [B, M, 17, 2] (y, x) and scores [B, M, 17, 1].
    let keypoint_of_pair: Vec<usize> = (0..PAIRS).map(|p| p % K).collect();
    let yx_rows: Vec<usize> = (0..2 * PAIRS).map(|r| keypoint_of_pair[r % PAIRS] + (r / PAIRS) * K).collect();
    let pair_positions = g.rows("mp_pair_position_maps", &p, &yx_rows);
    let twice = g.b.op("Concat", "mp_pair_cells_twice", &[&pair_cells, &pair_cells], vec![proto::attr_int("axis", 1)]);
    let pose_yx = g.gather_elements("mp_pair_positions", &pair_positions, &twice, 2);
    let pose_yx = g.b.reshape("mp_pair_positions_split", &pose_yx, &[-1, 2, k, k, a]);
    let pose_yx = g.b.op("Transpose", "mp_pair_positions_by_cell", &[&pose_yx], vec![proto::attr_ints("perm", &[0, 4, 2, 3, 1])]);
    let pose_table = g.b.reshape("mp_pose_table", &pose_yx, &[-1, m, k, 2]);
    // Score cells: n_j at the pair's cell, the root's own cell for the root (row 17, identity).
    let with_identity = g.b.op("Concat", "mp_position_index_identity", &[&n_cell, &identity], vec![proto::attr_int("axis", 1)]);
    let score_rows: Vec<usize> = (0..PAIRS).map(|p| if p / K == p % K { K } else { p % K }).collect();
    let score_maps = g.rows("mp_pair_score_cell_maps", &with_identity, &score_rows);
    let score_cells = g.gather_elements("mp_pair_score_cells", &score_maps, &pair_cells, 2);
    let scores_flat = g.b.reshape("mp_scores_flat", &scores, &[-1, k, a]);
    let pair_scores = g.rows("mp_pair_score_maps", &scores_flat, &keypoint_of_pair);
    let pair_scores = g.gather_elements("mp_pair_scores", &pair_scores, &score_cells, 2);
    let pair_scores = g.b.reshape("mp_pair_scores_split", &pair_scores, &[-1, k, k, a]);
    let pair_scores = g.b.op("Transpose", "mp_pair_scores_by_cell", &[&pair_scores], vec![proto::attr_ints("perm", &[0, 3, 1, 2])]);
    let score_table = g.b.reshape("mp_score_table", &pair_scores, &[-1, m, k, 1]);

    // The candidates' priority in scan order, [B, M, 17, 2] (the same value in each of a
    // candidate's 34 places, so that TopK's indices read a whole pose).
    let window = local_max_window(g.b, &v);
    let none = g.b.scalar_f32("mp_none", f32::NEG_INFINITY, 1);
    let threshold = g.b.scalar_f32("mp_threshold", decision_threshold(spec), 1);
    let beaten = g.b.op("Greater", "mp_beaten", &[&window, &v], vec![]);
    let local_max = g.b.op("Where", "mp_local_max_value", &[&beaten, &none, &v], vec![]);
    let below = g.b.op("Less", "mp_below_threshold", &[&v, &threshold], vec![]);
    let priority = g.b.op("Where", "mp_candidates", &[&below, &none, &local_max], vec![]);
    let priority =
        g.b.op("Transpose", "mp_candidates_by_cell", &[&priority], vec![proto::attr_ints("perm", &[0, 2, 3, 1])]);
    let priority = g.b.reshape("mp_candidates_flat", &priority, &[-1, m, 1, 1]);
    let spread = g.b.const_i64("mp_pose_shape", &[4], &[1, 1, k, 2]);
    let mut priority = g.b.op("Expand", "mp_priority", &[&priority, &spread], vec![]);

    // Every candidate's own position, [B, A, 17, 2], to suppress by.
    let own = g.b.reshape("mp_positions_split", &p, &[-1, 2, k, a]);
    let own = g.b.op("Transpose", "mp_candidate_positions", &[&own], vec![proto::attr_ints("perm", &[0, 3, 2, 1])]);
    let r2 = spec.params.nms_radius * spec.params.nms_radius;
    let r2 = g.b.scalar_f32("mp_nms_radius_sq", r2, 1);
    let sum_yx = g.b.const_f32("mp_sum_yx", &[2, 1], &[1.0, 1.0]);

    let one = g.b.const_i64("mp_one", &[1], &[1]);
    let mut picked_values = Vec::new();
    let mut picked = Vec::new();
    let mut poses = Vec::new();
    for r in 0..n {
        let (value, index) = g.b.op_two(
            "TopK",
            &format!("mp_round{r}_best"),
            &[&priority, &one],
            vec![proto::attr_int("axis", 1), proto::attr_int("largest", 1), proto::attr_int("sorted", 1)],
        );
        let pose = g.gather_elements(&format!("mp_round{r}_pose"), &pose_table, &index, 1);
        if r + 1 < n {
            // Candidates within R of the same keypoint of this pose are not live any more (the
            // root too: its distance is 0).
            let d = g.b.op("Sub", &format!("mp_round{r}_nms_d"), &[&own, &pose], vec![]);
            let d2 = g.b.op("Mul", &format!("mp_round{r}_nms_d_sq"), &[&d, &d], vec![]);
            let d2 = g.b.op("MatMul", &format!("mp_round{r}_nms_d2"), &[&d2, &sum_yx], vec![]);
            let far = g.b.op("Greater", &format!("mp_round{r}_nms_far"), &[&d2, &r2], vec![]);
            let far = g.b.reshape(&format!("mp_round{r}_nms_far_flat"), &far, &[-1, m, 1, 1]);
            priority = g.b.op("Where", &format!("mp_round{r}_live_next"), &[&far, &priority, &none], vec![]);
        }
        picked_values.push(value);
        picked.push(index);
        poses.push(pose);
    }
    outputs(&mut g, spec, &r2, &poses, &picked, &picked_values, &score_table);
}

/// Tensors `parts` ([B, 1, ...] each) joined on axis 1, or the one.
fn join(g: &mut Builder<'_>, hint: &str, parts: &[String]) -> String {
    if parts.len() == 1 {
        return parts[0].clone();
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.b.op("Concat", hint, &parts, vec![proto::attr_int("axis", 1)])
}

/// The rounds' poses, their keypoint scores and pose scores, in the outputs: `poses [B, N, 17, 3]`
/// (x, y, score) and `pose_scores [B, N]`, an empty round's slot -1 and zeros.
fn outputs(
    g: &mut Builder<'_>,
    spec: &MultiPoseSpec,
    r2: &str,
    poses: &[String],
    picked: &[String],
    picked_values: &[String],
    score_table: &str,
) {
    let n = poses.len() as i64;
    let k = K as i64;
    let positions = join(g, "mp_poses_yx", poses);
    let picked = join(g, "mp_picked", picked);
    let values = join(g, "mp_picked_values", picked_values);

    let slice = |g: &mut Builder<'_>, hint: &str, x: &str, axes: &[i64]| {
        let starts = g.b.const_i64(&format!("{hint}_starts"), &[axes.len() as i64], &vec![0; axes.len()]);
        let ends = g.b.const_i64(&format!("{hint}_ends"), &[axes.len() as i64], &vec![1; axes.len()]);
        let axes = g.b.const_i64(&format!("{hint}_axes"), &[axes.len() as i64], axes);
        g.b.op("Slice", hint, &[x, &starts, &ends, &axes], vec![])
    };
    let picked_once = slice(g, "mp_picked_once", &picked, &[3]);
    let keypoint_scores = g.gather_elements("mp_keypoint_scores", score_table, &picked_once, 1);
    let value = slice(g, "mp_picked_value", &values, &[2, 3]);
    let none = g.b.scalar_f32("mp_none", f32::NEG_INFINITY, 1);
    let found = g.b.op("Greater", "mp_found", &[&value, &none], vec![]);

    // Pose scores: a keypoint's score counts unless it is within R of the same keypoint of an
    // earlier pose. Every pose against every pose, [B, N, N, 17] squared distances, the later
    // and same ones masked to +inf, their min against R^2.
    let scores_by_keypoint = g.b.reshape("mp_keypoint_scores_row", &keypoint_scores, &[-1, n, 1, k]);
    let counted = if n == 1 {
        scores_by_keypoint
    } else {
        let mine = g.b.reshape("mp_poses_mine", &positions, &[-1, n, 1, 2 * k]);
        let theirs = g.b.reshape("mp_poses_theirs", &positions, &[-1, 1, n, 2 * k]);
        let d = g.b.op("Sub", "mp_poses_d", &[&mine, &theirs], vec![]);
        let d2 = g.b.op("Mul", "mp_poses_d_sq", &[&d, &d], vec![]);
        let mut pairs = vec![0.0f32; 2 * K * K];
        for j in 0..K {
            pairs[(2 * j) * K + j] = 1.0;
            pairs[(2 * j + 1) * K + j] = 1.0;
        }
        let pairs = g.b.const_f32("mp_sum_yx_per_keypoint", &[2 * k, k], &pairs);
        let d2 = g.b.op("MatMul", "mp_poses_d2", &[&d2, &pairs], vec![]);
        let n = n as usize;
        let later: Vec<f32> =
            (0..n * n).map(|c| if c % n < c / n { 0.0 } else { f32::INFINITY }).collect();
        let later = g.b.const_f32("mp_not_earlier", &[n as i64, n as i64, 1], &later);
        let d2 = g.b.op("Add", "mp_poses_d2_earlier", &[&d2, &later], vec![]);
        let nearest = g.b.reduce_min("mp_poses_nearest", &d2, 2);
        let far = g.b.op("Greater", "mp_keypoint_counts", &[&nearest, r2], vec![]);
        let zero = g.b.scalar_f32("zero", 0.0, 1);
        g.b.op("Where", "mp_counted_scores", &[&far, &scores_by_keypoint, &zero], vec![])
    };
    let ones = g.b.const_f32("mp_sum_keypoints", &[k, 1], &[1.0; K]);
    let sum = g.b.op("MatMul", "mp_pose_score_sum", &[&counted, &ones], vec![]);
    let count = g.b.scalar_f32("mp_keypoints", K as f32, 1);
    let mean = g.b.op("Div", "mp_pose_score_found", &[&sum, &count], vec![]);
    let empty = g.b.scalar_f32("mp_empty_score", -1.0, 1);
    let pose_scores = g.b.op("Where", "mp_pose_score", &[&found, &mean, &empty], vec![]);
    let shape = g.b.const_i64("mp_pose_scores_shape", &[2], &[-1, n]);
    g.b.op_into("Reshape", "mp_pose_scores", &[&pose_scores, &shape], vec![], &spec.pose_scores);

    let xy = g.indices("mp_xy", &[1, 0]);
    let xy = g.b.op("Gather", "mp_poses_xy", &[&positions, &xy], vec![proto::attr_int("axis", 3)]);
    let rows = g.b.op("Concat", "mp_poses_rows", &[&xy, &keypoint_scores], vec![proto::attr_int("axis", 3)]);
    let zero = g.b.scalar_f32("zero", 0.0, 1);
    g.b.op_into("Where", "mp_poses", &[&found, &rows, &zero], vec![], &spec.poses);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traversal_decodes_every_keypoint_once_from_a_known_source() {
        let (steps, levels) = traversal();
        // Ankle to ankle: the chain's longest path.
        assert_eq!(levels, 8);
        let edges = directed_edges();
        for k0 in 0..K {
            for j in 0..K {
                let step = steps[k0 * K + j];
                if j == k0 {
                    assert_eq!(step, Step { row: IDENTITY_ROW, from_pair: k0 * K + k0 });
                    continue;
                }
                let (source, target) = edges[step.row];
                assert_eq!(target, j);
                assert_eq!(step.from_pair, k0 * K + source);
            }
        }
        // The root is the right wrist (10): the elbow (8) comes backward over edge 12.
        assert_eq!(steps[10 * K + 8], Step { row: 12, from_pair: 10 * K + 10 });
    }
}
