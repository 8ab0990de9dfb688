#!/usr/bin/env python3
"""List every registry and the components registered in it, including those plugins add.

usage: tools/list_components.py [--plugin SPEC ...] [--config FILE]
"""
from detkit.engine import config_argument_parser, setup_cfg


def registries():
    """(name, Registry) for every kind of registered part, in build order."""
    import detkit.modeling as m

    return [
        ("BACKBONE_REGISTRY", m.BACKBONE_REGISTRY),
        ("NECK_REGISTRY", m.NECK_REGISTRY),
        ("ANCHOR_GENERATOR_REGISTRY", m.ANCHOR_GENERATOR_REGISTRY),
        ("MATCHER_REGISTRY", m.MATCHER_REGISTRY),
        ("BOX_CODER_REGISTRY", m.BOX_CODER_REGISTRY),
        ("DENSE_HEAD_REGISTRY", m.DENSE_HEAD_REGISTRY),
        ("RPN_HEAD_REGISTRY", m.RPN_HEAD_REGISTRY),
        ("PROPOSAL_GENERATOR_REGISTRY", m.PROPOSAL_GENERATOR_REGISTRY),
        ("ROI_HEADS_REGISTRY", m.ROI_HEADS_REGISTRY),
        ("ROI_BOX_HEAD_REGISTRY", m.ROI_BOX_HEAD_REGISTRY),
        ("META_ARCH_REGISTRY", m.META_ARCH_REGISTRY),
    ]


def main(argv=None):
    args = config_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_cfg(args)  # loads installed plugins, --plugin and the config's PLUGINS
    for name, registry in registries():
        print(f"{name} ({len(registry)})")
        print(registry.table())
        print()


if __name__ == "__main__":
    main()
