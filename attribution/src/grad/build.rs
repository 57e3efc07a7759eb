//! Building a gradient index for an adapter over a Datanet.

use std::path::Path;

use lorad_datanet::Datanet;
use lorad_store::Adapter;
use lorad_train::{DiffLlama, Example, LoraSet, ProbeSpec, Probes, projected_gradients};

use super::index::{GradIndex, GradIndexHeader, IndexedRecord};
use crate::Result;

/// Record `i` of `datanet` as a training example, cut to `max_len` tokens (the prompt part is
/// kept as context; a record whose completion is cut away entirely has no targets).
pub fn datanet_example(datanet: &Datanet, i: usize, max_len: usize) -> Example {
    let tokens = datanet.tokens(i);
    let keep = tokens.len().min(max_len.max(2));
    Example { tokens: tokens[..keep].to_vec(), prompt_len: datanet.prompt_len(i).min(keep) }
}

/// Projects every record's gradient under `adapter`, fits the preconditioner and writes the
/// index into `dir`. Records with nothing to score (cut away by `max_len`) get a zero gradient,
/// so index rows stay aligned with the Datanet's records.
#[allow(clippy::too_many_arguments)] // each is a distinct knob; a struct would only rename them
pub fn build_grad_index(
    model: &DiffLlama,
    adapter: &Adapter,
    datanet: &Datanet,
    probe: ProbeSpec,
    max_len: usize,
    batch: usize,
    dir: &Path,
    mut progress: impl FnMut(usize),
) -> Result<GradIndex> {
    let lora = LoraSet::from_adapter(adapter, &model.base_shape(), model.device())?;
    let probes = Probes::new(&lora, probe, model.device())?;
    let examples: Vec<Example> =
        (0..datanet.len()).map(|i| datanet_example(datanet, i, max_len)).collect();
    let scored: Vec<usize> =
        (0..examples.len()).filter(|&i| examples[i].num_targets() > 0).collect();
    let subset: Vec<Example> = scored.iter().map(|&i| examples[i].clone()).collect();
    let grads = projected_gradients(model, &lora, &probes, &subset, batch, &mut progress)?;
    let mut features = vec![vec![0f32; probes.dim()]; examples.len()];
    for (&i, g) in scored.iter().zip(grads) {
        features[i] = g;
    }
    let header = GradIndexHeader {
        adapter: adapter.name.clone(),
        adapter_hash: adapter.content_hash.clone(),
        datanet: datanet.name().to_owned(),
        datanet_root: lorad_datanet::to_0x_hex(&datanet.merkle_root()),
        probe,
        blocks: probes.block_sizes(),
        records: datanet
            .records()
            .iter()
            .map(|r| IndexedRecord { id: r.id.clone(), contributor: r.contributor })
            .collect(),
        contributors: datanet.contributors().iter().map(|c| c.name.clone()).collect(),
        ..GradIndexHeader::default()
    };
    GradIndex::build(dir, header, &features)
}
