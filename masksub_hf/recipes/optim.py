"""Optimizers beyond ``--optim``: layer-wise learning-rate decay groups (``--layer_decay``) and timm's optimizers
(``--timm_optimizer lamb``: DeiT-III and the ResNet strikes-back recipes), with Trainer's schedulers."""

from transformers import Trainer

from .layer_decay import param_groups_layer_decay


def create_optimizer(model, args, decay_parameter_names):
    """The optimizer ``args`` asks for: parameter groups by layer (``layer_decay``) or Trainer's two groups
    (weight decay or not, ``decay_parameter_names``), built by timm (``timm_optimizer``) or as ``--optim``.

    Every group carries its own ``lr``: Trainer's schedulers scale them all by the same factor.
    """
    if args.layer_decay is not None:
        groups = param_groups_layer_decay(model, args.learning_rate, args.weight_decay, args.layer_decay)
    else:
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in trainable if n in decay_parameter_names], "weight_decay": args.weight_decay},
                  {"params": [p for n, p in trainable if n not in decay_parameter_names], "weight_decay": 0.0}]
    if args.timm_optimizer:
        from timm.optim import create_optimizer_v2

        return create_optimizer_v2(groups, opt=args.timm_optimizer, lr=args.learning_rate,
                                   weight_decay=args.weight_decay)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return optimizer_cls(groups, **optimizer_kwargs)
