# emu_switch(save_sp, load_sp): x86-64 SysV fiber switch for emu_runtime.hpp. Saves the callee-saved registers
# on the current stack, stores its pointer in *save_sp and resumes the fiber whose stack pointer is load_sp.
  .text
  .globl emu_switch
  .type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .section .note.GNU-stack,"",@progbits
