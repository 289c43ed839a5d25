build-d/data/loader.o: data/loader.c data/data.h core/status.h
data/data.h:
core/status.h:
