// The Python module object for fastser._C.  Importing it runs the static TORCH_LIBRARY /
// TORCH_LIBRARY_IMPL initialisers of every translation unit, which registers the ops.
// The module itself holds nothing: every entry point is reached through torch.ops.fastser.
#include <Python.h>

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "fastser's compiled custom operators (registered under torch.ops.fastser)",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
