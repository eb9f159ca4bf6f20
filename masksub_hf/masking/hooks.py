"""A forward hook that changes a module's output in the sub branch only, and is right under ``torch.compile``.

Dynamo does not guard on a module's hooks (``torch._dynamo.config.skip_nnmodule_hook_guards``): a hook
registered for the sub forward alone is invisible to a graph compiled for the main forward, which is then
reused for the sub branch with every token kept. So the hook stays registered and reads the sub branch's
mask from an attribute: ``None`` in the main branch (the output passes through), the mask in the sub
branch. Dynamo guards on that attribute's type and keeps one graph for each branch, whatever arguments
the two forwards are called with.
"""

import contextlib


class SubBranchHook:
    """``edit(module, args, output, mask)`` applied to ``module``'s output while :meth:`active` is entered.

    :meth:`install` it before the first forward (a graph compiled before it would not know it) and
    :meth:`remove` it when training ends; in between it passes outputs through unchanged.
    """

    def __init__(self, edit):
        self.edit = edit
        self.mask = None
        self.handle = None
        self.module = None

    def __call__(self, module, args, output):
        if self.mask is None:
            return None  # main branch, evaluation: the output as it is
        return self.edit(module, args, output, self.mask)

    def install(self, module):
        if self.module is not module:
            self.remove()
            self.handle, self.module = module.register_forward_hook(self), module

    @contextlib.contextmanager
    def active(self, module, mask):
        self.install(module)
        self.mask = mask
        try:
            yield
        finally:
            self.mask = None

    def remove(self):
        if self.handle is not None:
            self.handle.remove()
        self.handle = self.module = None
