"""A hook that changes a module's input or output in the sub branch only, and is right under ``torch.compile``.

Dynamo does not guard on a module's hooks (``torch._dynamo.config.skip_nnmodule_hook_guards``): a hook
registered for the sub forward alone is invisible to a graph compiled for the main forward, which is then
reused for the sub branch with every token kept. So the hook stays registered and reads the sub branch's
mask from an attribute: ``None`` in the main branch (the output passes through), the mask in the sub
branch. Dynamo guards on that attribute's type and keeps one graph for each branch, whatever arguments
the two forwards are called with.
"""

import contextlib


class SubBranchHook:
    """``edit`` applied to one module of a model while :meth:`active` is entered; inert otherwise.

    ``locate(model)``: the module to hook, found once per model. ``on_input=False``: a forward hook,
    ``edit(module, args, output, mask)`` returns the new output; ``on_input=True``: a forward pre-hook,
    ``edit(module, args, kwargs, mask)`` returns the new ``(args, kwargs)``. :meth:`install` it before the
    first forward (a graph compiled before it would not know it) and :meth:`remove` it when training ends;
    in between it passes everything through unchanged.
    """

    def __init__(self, edit, locate, on_input: bool = False):
        self.edit = edit
        self.locate = locate
        self.on_input = on_input
        self.mask = None
        self.handle = None
        self.module = None
        self._located = (None, None)  # (model, its module): walking a model's modules every step costs

    def __call__(self, module, args, output_or_kwargs):
        if self.mask is None:
            return None  # main branch, evaluation: as it is
        return self.edit(module, args, output_or_kwargs, self.mask)

    def module_of(self, model):
        if self._located[0] is not model:
            self._located = (model, self.locate(model))
        return self._located[1]

    def install(self, model):
        module = self.module_of(model)
        if self.module is not module:
            self.remove()
            register = module.register_forward_pre_hook if self.on_input else module.register_forward_hook
            self.handle = register(self, with_kwargs=True) if self.on_input else register(self)
            self.module = module

    @contextlib.contextmanager
    def active(self, model, mask):
        self.install(model)
        self.mask = mask
        try:
            yield
        finally:
            self.mask = None

    def remove(self):
        if self.handle is not None:
            self.handle.remove()
        self.handle = self.module = None
