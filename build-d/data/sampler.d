build-d/data/sampler.o: data/sampler.c data/data.h core/status.h \
 core/rng.h
data/data.h:
core/status.h:
core/rng.h:
