//! The one place where models meet tract: bytes in, input facts pinned, typed, optimized, run.
//!
//! tract has its own (prost) ONNX messages, so models cross over as serialized bytes; the rewrite
//! hands over the input file's bytes untouched.
//!
//! Models reach this module validated ([`crate::model::validate`], run by every parse in
//! [`crate::model::io`]). What tract may still do wrong, panic, is contained: every call into tract
//! runs under `shielded`, which turns a panic into an error naming it, without printing it.
//! Pinned shapes are bounded here, as they are only known when tract gets them.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use tract_onnx::prelude::*;

use crate::error::{one_line, printable, Error};
use crate::model::proto::Dim;
use crate::model::validate::{too_large, MAX_TENSOR_ELEMENTS};

/// A graph input or output as tract's shape inference sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFacts {
    pub name: String,
    /// `Some(f32)` etc.; `None` when inference could not settle it.
    pub datum_type: Option<DatumType>,
    /// One entry per axis: a fixed size or the name of a symbolic dimension.
    pub shape: Option<Vec<Dim>>,
}

impl TensorFacts {
    /// The fixed dims, or `None` if any dim is symbolic or the rank is unknown (for verification).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fixed_shape(&self) -> Option<Vec<usize>> {
        self.shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) if *v >= 0 => Some(*v as usize),
                _ => None,
            })
            .collect()
    }

    /// `[1, 3, 257, 257]`, `[N, 17, 17, 17]`, `?`
    pub fn shape_string(&self) -> String {
        match &self.shape {
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(|d| printable(&d.to_string()).into_owned()).collect();
                format!("[{}]", dims.join(", "))
            }
            None => "?".to_string(),
        }
    }
}

/// `name [dims], name [dims]` for messages: each name printable on one line.
pub fn list_tensors(tensors: &[TensorFacts]) -> String {
    let each: Vec<String> = tensors.iter().map(|t| format!("{} {}", printable(&t.name), t.shape_string())).collect();
    each.join(", ")
}

/// The facts of a model's inputs and outputs after tract's shape inference.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub inputs: Vec<TensorFacts>,
    pub outputs: Vec<TensorFacts>,
}

fn load(bytes: &[u8]) -> Result<InferenceModel, Error> {
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| Error::Tract(format!("tract could not read the model: {}", one_line(e.as_ref()))))?;
    onnx.model_for_proto_model(&proto)
        .map_err(|e| Error::Tract(format!("tract could not load the model: {}", one_line(e.as_ref()))))
}

thread_local! {
    /// Set while this thread runs tract under [`shielded`].
    static SHIELDED: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic caught under [`shielded`], with its location.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the panic hook, once: panics on a thread inside [`shielded`] are recorded instead of
/// printed; every other panic goes to the previous hook as before (tests still show theirs).
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if SHIELDED.with(Cell::get) {
                let at = info.location().map(|l| format!(" at {}:{}", crate_relative(l.file()), l.line()));
                let message = format!("{}{}", panic_message(info.payload()), at.unwrap_or_default());
                CAUGHT.with(|c| *c.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "unknown panic".to_string(),
    }
}

/// `tract-onnx-0.23.9/src/model.rs` rather than the whole registry path.
fn crate_relative(file: &str) -> &str {
    file.find("tract-").map_or(file, |i| &file[i..])
}

/// Runs `f` (which calls tract) so that a panic becomes an [`Error::Tract`] on one line.
fn shielded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    install_panic_hook();
    let outer = SHIELDED.with(|s| s.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    SHIELDED.with(|s| s.set(outer));
    result.unwrap_or_else(|payload| {
        let message = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| panic_message(&*payload));
        Err(Error::Tract(format!("tract failed on this model (internal error: {})", flatten(&message))))
    })
}

fn flatten(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuses pinned shapes beyond [`MAX_TENSOR_ELEMENTS`].
fn check_pinned(what: &str, dims: &[usize]) -> Result<(), Error> {
    let elements = dims.iter().try_fold(1u64, |n, d| n.checked_mul(*d as u64));
    if elements.is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
        let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(too_large(&format!("{what} pinned to [{}]", dims.join(", "))));
    }
    Ok(())
}

/// Pins named inputs to concrete float shapes.
fn pin_inputs(model: &mut InferenceModel, pins: &[(String, Vec<usize>)]) -> Result<(), Error> {
    let names: Vec<String> = model
        .input_outlets()
        .map_err(|e| Error::Tract(one_line(e.as_ref())))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for (name, dims) in pins {
        let ix = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Usage(format!("the model has no input called {}", printable(name))))?;
        check_pinned(&format!("input {}", printable(name)), dims)?;
        let fact = InferenceFact::dt_shape(declared_type(model, ix), dims.as_slice());
        model.set_input_fact(ix, fact).map_err(|e| {
            Error::Tract(format!("tract rejected the shape pinned on input {}: {}", printable(name), one_line(e.as_ref())))
        })?;
    }
    Ok(())
}

/// The element type input `ix` declares (a float16 model's image is float16), float32 when it
/// declares none.
fn declared_type(model: &InferenceModel, ix: usize) -> DatumType {
    use tract_onnx::tract_hir::infer::Factoid;
    model.input_fact(ix).ok().and_then(|f| f.datum_type.concretize()).unwrap_or(DatumType::F32)
}

fn dims_of(shape: &ShapeFact) -> Vec<Dim> {
    shape
        .iter()
        .map(|d| match d.to_i64() {
            Ok(v) => Dim::Fixed(v),
            Err(_) => Dim::Symbol(d.to_string()),
        })
        .collect()
}

/// The model typed by tract's shape inference, the named inputs pinned.
fn typed_model(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<TypedModel, Error> {
    let mut model = load(bytes)?;
    pin_inputs(&mut model, pins)?;
    model.into_typed().map_err(|e| Error::Tract(format!("tract shape inference failed: {}", one_line(e.as_ref()))))
}

/// Shape inference: the facts of every input and output, with the named inputs pinned to
/// concrete shapes; other inputs keep what the model declares.
pub fn infer_facts(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<ModelFacts, Error> {
    shielded(|| {
        let typed = typed_model(bytes, pins)?;
        let facts_of = |outlets: &[OutletId]| -> Vec<TensorFacts> {
            outlets
                .iter()
                .map(|o| {
                    let fact = typed.outlet_fact(*o).expect("outlet of the model");
                    TensorFacts {
                        name: typed.outlet_label(*o).unwrap_or(&typed.node(o.node).name).to_string(),
                        datum_type: Some(fact.datum_type),
                        shape: Some(dims_of(&fact.shape)),
                    }
                })
                .collect()
        };
        let inputs = facts_of(typed.input_outlets().expect("inputs"));
        let outputs = facts_of(typed.output_outlets().expect("outputs"));
        Ok(ModelFacts { inputs, outputs })
    })
}

/// Shape inference over the whole graph: the facts of every tensor, named as in the ONNX model
/// (tract labels each outlet with the ONNX tensor it stands for; initializers are named nodes).
/// Used to judge rank and axis rules on intermediate tensors.
pub fn infer_tensor_facts(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<Vec<TensorFacts>, Error> {
    shielded(|| {
        let typed = typed_model(bytes, pins)?;
        let mut facts = Vec::new();
        for node in typed.nodes() {
            for (slot, output) in node.outputs.iter().enumerate() {
                let outlet = OutletId::new(node.id, slot);
                let name = match typed.outlet_label(outlet) {
                    Some(label) => label.to_string(),
                    None if slot == 0 => node.name.clone(),
                    None => continue,
                };
                facts.push(TensorFacts {
                    name,
                    datum_type: Some(output.fact.datum_type),
                    shape: Some(dims_of(&output.fact.shape)),
                });
            }
        }
        Ok(facts)
    })
}

/// An optimized, runnable model with fixed input shapes, built once and reused for every input
/// (verification runs models: native only).
#[cfg(not(target_arch = "wasm32"))]
pub struct Runner {
    plan: std::sync::Arc<TypedRunnableModel>,
    output_names: Vec<String>,
    /// What each input takes: [`Runner::run`] casts the tensors it is given to these.
    input_types: Vec<DatumType>,
}

#[cfg(not(target_arch = "wasm32"))]
impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("outputs", &self.output_names).finish()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Runner {
    /// Builds the plan with every input pinned to `input_shapes` (one per graph input that is
    /// not an initializer, in order).
    pub fn new(bytes: &[u8], input_shapes: &[Vec<usize>]) -> Result<Runner, Error> {
        shielded(|| {
            let mut model = load(bytes)?;
            let mut input_types = vec![];
            for (ix, dims) in input_shapes.iter().enumerate() {
                check_pinned(&format!("input #{ix}"), dims)?;
                input_types.push(declared_type(&model, ix));
                let fact = InferenceFact::dt_shape(input_types[ix], dims.as_slice());
                model
                    .set_input_fact(ix, fact)
                    .map_err(|e| Error::Tract(format!("tract rejected the shape of input #{ix}: {}", one_line(e.as_ref()))))?;
            }
            let output_names = model
                .output_outlets()
                .map_err(|e| Error::Tract(one_line(e.as_ref())))?
                .iter()
                .map(|o| model.outlet_label(*o).unwrap_or(&model.node(o.node).name).to_string())
                .collect();
            let plan = model
                .into_optimized()
                .and_then(|m| m.into_runnable())
                .map_err(|e| Error::Tract(format!("tract could not optimize the model: {}", one_line(e.as_ref()))))?;
            Ok(Runner { plan, output_names, input_types })
        })
    }

    #[cfg(feature = "testing")]
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// The position of the output called `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.output_names.iter().position(|n| n == name)
    }

    /// Runs the model on one set of inputs (in graph-input order) and returns every output.
    /// Inputs are cast to the types the model takes (float32 to float16 rounds to nearest even);
    /// float16 outputs come back as float32, which holds every float16 value exactly.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        shielded(|| {
            let cast_failed =
                |e: anyhow::Error| Error::Tract(format!("tract could not cast a tensor: {}", one_line(e.as_ref())));
            let inputs = inputs
                .into_iter()
                .zip(self.input_types.iter().chain(std::iter::repeat(&DatumType::F32)))
                .map(|(t, dt)| match t.datum_type() == *dt {
                    true => Ok(t.into()),
                    false => t.cast_to_dt(*dt).map(|c| c.into_owned().into()).map_err(cast_failed),
                })
                .collect::<Result<TVec<TValue>, Error>>()?;
            let outputs = self
                .plan
                .run(inputs)
                .map_err(|e| Error::Tract(format!("tract failed to run the model: {}", one_line(e.as_ref()))))?;
            outputs
                .into_iter()
                .map(|v| match v.datum_type() {
                    DatumType::F16 => v.cast_to::<f32>().map(|c| c.into_owned()).map_err(cast_failed),
                    _ => Ok(v.into_tensor()),
                })
                .collect()
        })
    }
}


#[cfg(test)]
mod tests {
    use onnx_protobuf::GraphProto;

    use super::*;
    use crate::model::proto;
    use crate::testing::synthetic;

    fn model_bytes(edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
        synthetic::edited_posenet_bytes(11, edit)
    }

    fn error(bytes: &[u8]) -> String {
        infer_facts(bytes, &[]).unwrap_err().to_string()
    }

    #[test]
    fn a_panic_inside_tract_is_an_error_and_leaves_the_hook_alone() {
        // tract-core 0.23.9 indexes a Conv's `pads` by spatial axis unchecked.
        let bytes = model_bytes(|g| {
            let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
            conv.attribute.retain(|a| a.name != "pads");
            conv.attribute.push(proto::attr_ints("pads", &[]));
        });
        let err = error(&bytes);
        assert!(err.starts_with("tract failed on this model (internal error: index out of bounds"), "{err}");
        assert!(err.contains("tract-core-0.23.9/src/ops/cnn/padding.rs") && !err.contains('\n'), "{err}");
        assert!(!SHIELDED.with(Cell::get));
        // Panics elsewhere still unwind as usual.
        assert!(std::panic::catch_unwind(|| panic!("an ordinary panic")).is_err());
    }

    #[test]
    fn pinned_shapes_are_bounded() {
        let bytes = model_bytes(|g| {
            let dims = [Dim::Fixed(1), Dim::Fixed(3), Dim::Symbol("H".into()), Dim::Fixed(257)];
            proto::set_declared_shape(&mut g.input[0], &dims);
        });
        let err = infer_facts(&bytes, &[("image".into(), vec![1, 3, 1 << 40, 257])]).unwrap_err().to_string();
        assert!(err.contains("input image pinned to [1, 3, 1099511627776, 257]"), "{err}");
        let err = Runner::new(&bytes, &[vec![1, 3, usize::MAX, 257]]).unwrap_err().to_string();
        assert!(err.contains("input #0 pinned to"), "{err}");
    }
}
