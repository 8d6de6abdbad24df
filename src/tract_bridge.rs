//! The one place where models meet tract: bytes in, input facts pinned, typed, optimized, run.
//!
//! tract has its own (prost) ONNX messages, so models cross over as serialized bytes; the rewrite
//! hands over the input file's bytes untouched.

use tract_onnx::prelude::*;

use crate::error::Error;
use crate::proto::Dim;

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
    /// The fixed dims, or `None` if any dim is symbolic or the rank is unknown.
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
            Some(dims) => format!("[{}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
            None => "?".to_string(),
        }
    }
}

/// The facts of a model's inputs and outputs after tract's shape inference.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub inputs: Vec<TensorFacts>,
    pub outputs: Vec<TensorFacts>,
}

fn load(bytes: &[u8]) -> Result<InferenceModel, Error> {
    tract_onnx::onnx()
        .model_for_read(&mut &*bytes)
        .map_err(|e| Error::Tract(format!("tract could not load the model: {}", one_line(&e))))
}

/// Pins named inputs to concrete float shapes.
fn pin_inputs(model: &mut InferenceModel, pins: &[(String, Vec<usize>)]) -> Result<(), Error> {
    let names: Vec<String> = model
        .input_outlets()
        .map_err(|e| Error::Tract(one_line(&e)))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for (name, dims) in pins {
        let ix = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Usage(format!("the model has no input called {name}")))?;
        let fact = InferenceFact::dt_shape(f32::datum_type(), dims.as_slice());
        model
            .set_input_fact(ix, fact)
            .map_err(|e| Error::Tract(format!("tract rejected the shape pinned on input {name}: {}", one_line(&e))))?;
    }
    Ok(())
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

/// Shape inference: the facts of every input and output, with the named inputs pinned to
/// concrete shapes; other inputs keep what the model declares.
pub fn infer_facts(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<ModelFacts, Error> {
    let mut model = load(bytes)?;
    pin_inputs(&mut model, pins)?;
    let typed = model
        .into_typed()
        .map_err(|e| Error::Tract(format!("tract shape inference failed: {}", one_line(&e))))?;
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
    Ok(ModelFacts { inputs: facts_of(typed.input_outlets().expect("inputs")), outputs: facts_of(typed.output_outlets().expect("outputs")) })
}

/// Shape inference over the whole graph: the facts of every tensor, named as in the ONNX model
/// (tract labels each outlet with the ONNX tensor it stands for; initializers are named nodes).
/// Used to judge rank and axis rules on intermediate tensors.
pub fn infer_tensor_facts(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<Vec<TensorFacts>, Error> {
    let mut model = load(bytes)?;
    pin_inputs(&mut model, pins)?;
    let typed = model
        .into_typed()
        .map_err(|e| Error::Tract(format!("tract shape inference failed: {}", one_line(&e))))?;
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
}

/// An optimized, runnable model with fixed input shapes, built once and reused for every input.
pub struct Runner {
    plan: std::sync::Arc<TypedRunnableModel>,
    output_names: Vec<String>,
    input_shapes: Vec<Vec<usize>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("outputs", &self.output_names).finish()
    }
}

impl Runner {
    /// Builds the plan with every input pinned to `input_shapes` (one per graph input that is
    /// not an initializer, in order).
    pub fn new(bytes: &[u8], input_shapes: &[Vec<usize>]) -> Result<Runner, Error> {
        let mut model = load(bytes)?;
        for (ix, dims) in input_shapes.iter().enumerate() {
            let fact = InferenceFact::dt_shape(f32::datum_type(), dims.as_slice());
            model
                .set_input_fact(ix, fact)
                .map_err(|e| Error::Tract(format!("tract rejected the shape of input #{ix}: {}", one_line(&e))))?;
        }
        let output_names = model
            .output_outlets()
            .map_err(|e| Error::Tract(one_line(&e)))?
            .iter()
            .map(|o| model.outlet_label(*o).unwrap_or(&model.node(o.node).name).to_string())
            .collect();
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| Error::Tract(format!("tract could not optimize the model: {}", one_line(&e))))?;
        Ok(Runner { plan, output_names, input_shapes: input_shapes.to_vec() })
    }

    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    pub fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }

    /// The position of the output called `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.output_names.iter().position(|n| n == name)
    }

    /// Runs the model on one set of inputs (in graph-input order) and returns every output.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let outputs = self
            .plan
            .run(inputs.into_iter().map(|t| t.into()).collect())
            .map_err(|e| Error::Tract(format!("tract failed to run the model: {}", one_line(&e))))?;
        Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
    }
}

/// tract's error chain on one line, outermost first.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}
