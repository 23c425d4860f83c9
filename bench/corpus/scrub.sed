s#https?://[A-Za-z0-9.-]+(:[0-9]+)?#https://registry.invalid#g
s#registry/(src|cache|index)/[^/ ]+-[0-9a-f]{16}#registry/\1/REGISTRY#g
s#/tmp/corpus-[a-z]+\.[A-Za-z0-9]{6}#/tmp/corpus#g
s#registry\+https://registry\.invalid/[^#" ]*#registry+REGISTRY#g
s#(connection \([0-9]+\): )[A-Za-z0-9.-]+#\1registry.invalid#g
