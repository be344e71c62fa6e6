"""GNN4ITk module maps: creation from truth, native and ROOT (MMG) files, TorchScript graph building.

* :mod:`module_map.build` -- ``MapBuilder`` / ``build_module_map`` (``gnn4itk build-module-map``).
* :mod:`module_map.container` -- the ``ModuleMap`` container, native ``.npz`` IO.
* :mod:`module_map.map` -- ``load_map`` (either format); the container's names, re-exported.
* :mod:`module_map.root_io` -- ``read_root`` / ``write_root`` (uproot).
* :mod:`module_map.graph_builder` -- ``ModuleMapGraphBuilder`` (scriptable ``nn.Module``), on the map's constant
  tables (:mod:`module_map.search_tables`) and chunked expansions (:mod:`module_map.expansion`).
* :mod:`module_map.quantities` -- the cut quantities, numpy and torch twins.
* :mod:`module_map.coverage` -- true-edge coverage; :mod:`module_map.synthetic` -- synthetic events.

See ``docs/module_map.md``.
"""
