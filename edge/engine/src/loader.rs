//! The module loader of a function isolate: the bundle's modules by URL, plus their source maps so stack traces point at the author's files.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use deno_core::ModuleLoadOptions;
use deno_core::ModuleLoadReferrer;
use deno_core::ModuleLoadResponse;
use deno_core::ModuleLoader;
use deno_core::ModuleResolveResponse;
use deno_core::ModuleSpecifier;
use deno_core::ResolutionKind;
use deno_core::StaticModuleLoader;

use crate::bundle::Bundle;

/// URL prefix of a bundle's modules (`file:///index.js`), so stack traces name the file.
pub(crate) const BUNDLE_ROOT: &str = "file:///";

/// Serves a bundle's modules; `*.map` files in the bundle answer the modules'
/// `//# sourceMappingURL=` comments.
///
/// A spare isolate is created before anyone knows which function it will run, so the
/// loader starts empty and receives its bundle once, before the first module loads.
#[derive(Default)]
pub(crate) struct BundleLoader {
    bundle: OnceCell<LoadedBundle>,
}

struct LoadedBundle {
    modules: StaticModuleLoader,
    source_maps: HashMap<String, Arc<str>>,
}

impl BundleLoader {
    /// Gives the loader its bundle; a loader serves one bundle for its whole life.
    pub(crate) fn fill(&self, bundle: &Bundle) {
        let filled = self.bundle.set(LoadedBundle::new(bundle)).is_ok();
        debug_assert!(filled, "a bundle loader is filled once");
    }

    fn loaded(&self) -> &LoadedBundle {
        self.bundle.get_or_init(|| LoadedBundle {
            modules: StaticModuleLoader::new(Vec::<(ModuleSpecifier, String)>::new()),
            source_maps: HashMap::new(),
        })
    }
}

impl LoadedBundle {
    fn new(bundle: &Bundle) -> LoadedBundle {
        let mut source_maps = HashMap::new();
        let modules = bundle.modules().filter_map(|(path, source)| {
            let url = format!("{BUNDLE_ROOT}{path}");
            if path.ends_with(".map") {
                source_maps.insert(url, source.clone());
                return None;
            }
            let specifier = ModuleSpecifier::parse(&url).ok()?;
            Some((specifier, source.to_string()))
        });
        let modules = StaticModuleLoader::new(modules.collect::<Vec<_>>());
        LoadedBundle {
            modules,
            source_maps,
        }
    }
}

impl ModuleLoader for BundleLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        kind: ResolutionKind,
    ) -> ModuleResolveResponse {
        self.loaded().modules.resolve(specifier, referrer, kind)
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        referrer: Option<&ModuleLoadReferrer>,
        options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        self.loaded().modules.load(specifier, referrer, options)
    }

    fn load_external_source_map(&self, source_map_url: &str) -> Option<Cow<'_, [u8]>> {
        self.loaded()
            .source_maps
            .get(source_map_url)
            .map(|map| Cow::Borrowed(map.as_bytes()))
    }

    fn source_map_source_exists(&self, source_url: &str) -> Option<bool> {
        // A mapped source (e.g. file:///src/index.ts) belongs to the author's project:
        // name it in stack traces even though only the bundle output is loaded here.
        Some(source_url.starts_with(BUNDLE_ROOT))
    }
}
