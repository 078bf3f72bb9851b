//! HashAttention mappings for every layer of a model, saved as one file per layer in the
//! format [`HashMappingConfig::load`] reads.

use std::path::Path;

use super::{check, HashMapping, HashMappingConfig};
use crate::error::{AttnError, AttnResult};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;

/// Config of [`HashMappings`]: one [`HashMappingConfig`] for `layers` layers.
#[derive(Config, Debug)]
pub struct HashMappingsConfig {
    /// The mapping of each layer.
    pub mapping: HashMappingConfig,
    /// Layers.
    pub layers: usize,
}

/// One [`HashMapping`] per layer (heads batched within a layer).
#[derive(Module, Debug)]
pub struct HashMappings<B: Backend> {
    /// By layer.
    pub layers: Vec<HashMapping<B>>,
}

impl HashMappingsConfig {
    /// Random mappings.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<HashMappings<B>> {
        Ok(HashMappings {
            layers: (0..self.layers).map(|_| self.mapping.init(device)).collect::<AttnResult<_>>()?,
        })
    }

    /// Reads and checks `dir/config.json` (written by [`HashMappings::save_dir`]) without
    /// loading any weights, so that a caller can check it against its model first.
    pub fn read_dir_config(dir: impl AsRef<Path>) -> AttnResult<Self> {
        let path = dir.as_ref().join("config.json");
        let file_error = |message: String| AttnError::File { path: path.display().to_string(), message };
        let config = Self::load_binary(&check::read_config(&path)?).map_err(|e| file_error(e.to_string()))?;
        config.mapping.validate().map_err(|e| file_error(e.to_string()))?;
        if config.layers == 0 {
            return Err(file_error("mappings for 0 layers".into()));
        }
        Ok(config)
    }

    /// Loads mappings saved by [`HashMappings::save_dir`] (each layer's file checked by
    /// [`HashMappingConfig::load`]).
    pub fn load_dir<B: Backend>(
        dir: impl AsRef<Path>,
        device: &B::Device,
    ) -> AttnResult<(Self, HashMappings<B>)> {
        let dir = dir.as_ref();
        let config = Self::read_dir_config(dir)?;
        let layers = (0..config.layers)
            .map(|i| config.mapping.load(layer_path(dir, i), device))
            .collect::<AttnResult<_>>()?;
        Ok((config, HashMappings { layers }))
    }
}

/// Whether `path` names a safetensors file (by its extension) rather than a folder of
/// Burn records.
pub fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

impl HashMappingsConfig {
    /// The config of the mappings at `path`: a `.safetensors` file or a folder written by
    /// [`HashMappings::save_dir`]; no weight is read.
    pub fn read_config_at(path: impl AsRef<Path>) -> AttnResult<Self> {
        let path = path.as_ref();
        if is_safetensors(path) {
            Self::read_safetensors_config(path)
        } else {
            Self::read_dir_config(path)
        }
    }

    /// The mappings at `path`: a `.safetensors` file or a folder written by
    /// [`HashMappings::save_dir`].
    pub fn load_from<B: Backend>(
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> AttnResult<(Self, HashMappings<B>)> {
        let path = path.as_ref();
        if is_safetensors(path) {
            Self::load_safetensors(path, device)
        } else {
            Self::load_dir(path, device)
        }
    }
}

impl<B: Backend> HashMappings<B> {
    /// Writes `config.json` and `layer-<i>.mpk` for each layer into `dir` (created).
    pub fn save_dir(&self, config: &HashMappingsConfig, dir: impl AsRef<Path>) -> AttnResult<()> {
        let dir = dir.as_ref();
        let file_error = |e: &dyn std::fmt::Display| AttnError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| file_error(&e))?;
        config.save(dir.join("config.json")).map_err(|e| file_error(&e))?;
        for (i, mapping) in self.layers.iter().enumerate() {
            mapping.clone().save(layer_path(dir, i))?;
        }
        Ok(())
    }
}

/// `dir/layer-<i>` (the recorder adds `.mpk`).
pub fn layer_path(dir: &Path, layer: usize) -> std::path::PathBuf {
    dir.join(format!("layer-{layer}"))
}
