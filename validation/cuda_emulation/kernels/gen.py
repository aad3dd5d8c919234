# Rewrites lib/dsv3/ops/cuda/NAME.cu into OUT_DIR/NAME.cpp for g++: usage gen.py REPO_ROOT OUT_DIR NAME...
# Only two edits, so the host wrappers (launch configs, pack widths, StreamBuffers) run as written:
#   kernel<<<grid, block, shared, stream>>>(args);  ->  ::emu::launch(grid, block, shared, stream, <call>);
#   extern __shared__ unsigned char shared[];       ->  the emulator's dynamic shared buffer.
# The arguments are copied into a tuple at the launch, as CUDA copies kernel parameters.
import os
import sys


def matching_paren(text, open_pos):
    depth = 0
    for pos in range(open_pos, len(text)):
        if text[pos] == '(':
            depth += 1
        elif text[pos] == ')':
            depth -= 1
            if depth == 0:
                return pos
    raise ValueError('unbalanced parentheses after position %d' % open_pos)


def kernel_start(text, launch_pos):
    # Walks back from '<<<' over an optional template argument list and the (qualified) kernel name.
    pos = launch_pos
    while text[pos - 1].isspace():
        pos -= 1
    if text[pos - 1] == '>':
        depth = 0
        pos -= 1
        while True:
            depth += {'>': 1, '<': -1}.get(text[pos], 0)
            if depth == 0:
                break
            pos -= 1
    while text[pos - 1].isalnum() or text[pos - 1] in '_:':
        pos -= 1
    return pos


def convert(text):
    text = text.replace('extern __shared__ unsigned char shared[];', 'unsigned char* shared = ::emu::dynamic_shared();')
    out, pos = [], 0
    while (launch := text.find('<<<', pos)) >= 0:
        start = kernel_start(text, launch)
        kernel = text[start:launch].strip()
        config_end = text.index('>>>', launch)
        config = text[launch + 3:config_end]
        args_open = config_end + 3
        while text[args_open].isspace():
            args_open += 1
        assert text[args_open] == '(', 'expected kernel arguments after >>>'
        args_close = matching_paren(text, args_open)
        args = text[args_open + 1:args_close]
        out.append(text[pos:start])
        out.append(f'{{ auto emu_args = std::make_tuple({args}); ::emu::launch({config}, [&] {{ '
                   f'std::apply([](auto... a) {{ {kernel}(a...); }}, emu_args); }}); }}')
        pos = args_close + 1
    out.append(text[pos:])
    return ''.join(out)


repo, out_dir = sys.argv[1], sys.argv[2]
os.makedirs(out_dir, exist_ok=True)
for name in sys.argv[3:]:
    source = open(os.path.join(repo, 'lib/dsv3/ops/cuda', name + '.cu')).read()
    open(os.path.join(out_dir, name + '.cpp'), 'w').write('#include "emu_runtime.hpp"\n' + convert(source))
